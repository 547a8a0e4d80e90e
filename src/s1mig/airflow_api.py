"""A small client of Airflow 3's REST API (v2) for the running `s1mig serve`: a JWT from
the simple auth manager (POST /auth/token), DAG runs, human-in-the-loop answers.
Every failure is an S1migError with one line (ServiceUnavailable when nothing answers)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from s1mig.errors import S1migError

DAG_ID = "s1mig_daily"


class ServiceUnavailable(S1migError):
    """The API server does not answer."""


class ApiError(S1migError):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 90.0):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode() or "null"
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, f"{method} {path}: HTTP {exc.code}: {_detail(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceUnavailable(f"the Airflow API at {self.base_url} does not answer ({reason})") from None
        return json.loads(text)

    def token(self) -> str:
        if self._token is None:
            try:
                answer = self._request(
                    "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
                )
            except ApiError as exc:
                if exc.status in (400, 401, 403):
                    raise ApiError(
                        exc.status, f"the Airflow API at {self.base_url} refused the login of {self.username!r}"
                    ) from None
                raise
            self._token = answer["access_token"]
        return self._token

    def get(self, path: str, **query: Any) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        return self._request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", path, body)

    # ------------------------------------------------------------------ what s1mig asks

    def healthy(self) -> bool:
        try:
            self._request("GET", "/api/v2/monitor/health", auth=False)
        except S1migError:
            return False
        return True

    def dag(self, dag_id: str = DAG_ID) -> dict | None:
        try:
            return self.get(f"/api/v2/dags/{dag_id}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def unpause(self, dag_id: str = DAG_ID) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, conf: dict, run_id: str | None = None, dag_id: str = DAG_ID) -> dict:
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self.post(f"/api/v2/dags/{dag_id}/dagRuns", body)

    def runs(self, limit: int = 10, dag_id: str = DAG_ID) -> list[dict]:
        answer = self.get(f"/api/v2/dags/{dag_id}/dagRuns", limit=limit, order_by="-run_after")
        return answer.get("dag_runs", [])

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
        answer = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances")
        return answer.get("task_instances", [])

    def hitl_detail(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> dict | None:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/-1"
        try:
            return self.get(path + "/hitlDetails")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def answer_hitl(self, run_id: str, task_id: str, options: list[str], params_input: dict, dag_id: str = DAG_ID):
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/-1"
        return self.patch(path + "/hitlDetails", {"chosen_options": options, "params_input": params_input})


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode() or "{}")
    except (ValueError, OSError):
        return exc.reason or ""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return " ".join(str(detail).split())[:400]
