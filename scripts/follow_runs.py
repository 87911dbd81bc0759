"""Follow the DAG runs of a date range on a running Airflow (its REST API) until they all finish.

Prints every run and task state change as it happens; exits 0 when every run in the range succeeded and 1
when a run fails (or the timeout passes), after printing the end of each failed task attempt's log.
Standard library only, so any Python runs it:

    python scripts/follow_runs.py --dag-id seqrec_nightly --from-date 2017-11-25 --to-date 2017-12-03

The API is found at $AIRFLOW__API__BASE_URL and logged into as `admin` with the password
`airflow standalone` generated under $AIRFLOW_HOME (see scripts/airflow_env.sh).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

FINISHED_RUN = {"success", "failed"}
FAILED_TASK = {"failed", "up_for_retry"}
LOG_TAIL_LINES = 40


def loopback_only(base_url: str) -> str:
    """``base_url`` if it names this machine's loopback over http; the local instance's password is sent there
    and nowhere else."""
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to send the local Airflow password to {base_url}: this script talks only to "
                         f"the loopback instance of scripts/airflow_env.sh (http://127.0.0.1:PORT)")
    return base_url


class Api:
    """A logged-in client of the Airflow 3 REST API (/api/v2)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = loopback_only(base_url).rstrip("/")
        token = self._request("POST", "/auth/token", {"username": username, "password": password}, token=None)
        self.token = token["access_token"]

    def _request(self, method: str, path: str, body: dict | None = None, *, token: str | None,
                 accept: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Accept", accept)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def get(self, path: str, **query: str) -> dict:
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._request("GET", path + suffix, token=self.token)

    def runs(self, dag_id: str, first: dt.date, last: dt.date) -> list[dict]:
        found = self.get(f"/api/v2/dags/{dag_id}/dagRuns", logical_date_gte=f"{first}T00:00:00Z",
                         logical_date_lte=f"{last}T23:59:59Z", order_by="logical_date", limit="1000")
        return found["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        run = urllib.parse.quote(run_id, safe="")
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances", limit="1000")["task_instances"]

    def cancel_unfinished_backfills(self, dag_id: str) -> list[int]:
        """Cancel the DAG's backfills that never completed (e.g. one left by a run that was stopped); a new
        backfill is refused while one is running. Returns the cancelled backfill ids."""
        found = self.get("/api/v2/backfills", dag_id=dag_id, limit="1000").get("backfills", [])
        cancelled = []
        for backfill in found:
            if backfill.get("completed_at") is None:
                self._request("PUT", f"/api/v2/backfills/{backfill['id']}/cancel", token=self.token)
                cancelled.append(backfill["id"])
        return cancelled

    def log_tail(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
        run = urllib.parse.quote(run_id, safe="")
        content = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}",
                           full_content="true").get("content", [])
        lines = []
        for entry in content:
            if isinstance(entry, dict):
                event = entry.get("event", "")
                lines.extend(str(event).splitlines() or [""])
            else:
                lines.extend(str(entry).splitlines())
        return lines[-LOG_TAIL_LINES:]


def _password(airflow_home: Path, username: str) -> str:
    generated = airflow_home / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(generated.read_text())[username]
    except (OSError, KeyError, ValueError) as exc:
        raise SystemExit(f"no password for {username} in {generated} ({exc}); is `airflow standalone` running "
                         f"with AIRFLOW_HOME={airflow_home}?") from None


class Follower:
    """Prints run and task state changes, and the log end of every failed task attempt, once each."""

    def __init__(self, api: Api, dag_id: str) -> None:
        self.api = api
        self.dag_id = dag_id
        self.started = time.monotonic()
        self.states: dict[tuple[str, str], str] = {}
        self.reported: set[tuple[str, str, int]] = set()

    def say(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)

    def _changed(self, key: tuple[str, str], state: str) -> bool:
        changed = self.states.get(key) != state
        self.states[key] = state
        return changed

    def observe(self, run: dict) -> None:
        run_id, day = run["dag_run_id"], run["logical_date"][:10]
        was_finished = self.states.get((run_id, "")) in FINISHED_RUN
        if self._changed((run_id, ""), run["state"]):
            self.say(f"{day} run {run['state']}")
        if run["state"] == "queued" or was_finished:
            return
        for ti in sorted(self.api.task_instances(self.dag_id, run_id), key=lambda t: t.get("start_date") or "~"):
            state, tries = ti["state"] or "none", ti["try_number"]
            if self._changed((run_id, ti["task_id"]), state) and state != "none":
                self.say(f"{day} {ti['task_id']}: {state}" + (f" (try {tries})" if tries > 1 else ""))
            if state in FAILED_TASK and (run_id, ti["task_id"], tries) not in self.reported:
                self.reported.add((run_id, ti["task_id"], tries))
                self.say(f"{day} {ti['task_id']} try {tries} failed; the end of its log:")
                for line in self.api.log_tail(self.dag_id, run_id, ti["task_id"], tries):
                    print(f"    | {line}", flush=True)


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def print_durations(api: Api, dag_id: str, runs: list[dict]) -> None:
    """Wall time of the runs, and of each task over the runs that executed it (skipped ones excluded)."""
    per_task: dict[str, list[float]] = {}
    for run in runs:
        for ti in api.task_instances(dag_id, run["dag_run_id"]):
            seconds = _seconds(ti.get("start_date"), ti.get("end_date"))
            if ti["state"] == "success" and seconds is not None:
                per_task.setdefault(ti["task_id"], []).append(seconds)
    total = _seconds(min(r["start_date"] for r in runs), max(r["end_date"] for r in runs))
    print(f"runs: {len(runs)}, first start to last end {total:.0f}s; task seconds (runs, mean, max, sum):")
    for task_id, seconds in sorted(per_task.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {task_id:<28} {len(seconds):>3} {sum(seconds) / len(seconds):>7.1f} {max(seconds):>7.1f} "
              f"{sum(seconds):>8.1f}")


def follow(api: Api, dag_id: str, first: dt.date, last: dt.date, timeout_s: float, poll_s: float) -> bool:
    """Print state changes until every run in [first, last] finished; True when all succeeded."""
    follower = Follower(api, dag_id)
    while True:
        runs = api.runs(dag_id, first, last)
        for run in runs:
            follower.observe(run)
        failed = [run["logical_date"][:10] for run in runs if run["state"] == "failed"]
        if failed:
            # Later days wait for a failed one (wait_for_previous_*), so there is nothing more to see.
            follower.say(f"FAILED: run(s) {', '.join(failed)}; see the log ends above")
            return False
        if runs and all(run["state"] == "success" for run in runs):
            follower.say(f"all {len(runs)} run(s) succeeded")
            print_durations(api, dag_id, runs)
            return True
        if time.monotonic() - follower.started > timeout_s:
            states = ", ".join(f"{run['logical_date'][:10]} {run['state']}" for run in runs)
            follower.say(f"TIMEOUT after {timeout_s:.0f}s; runs: {states or 'none found'}")
            return False
        time.sleep(poll_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--from-date", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--to-date", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds (default 3600)")
    parser.add_argument("--poll", type=float, default=3, help="seconds between polls (default 3)")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--cancel-unfinished-backfills", action="store_true",
                        help="Only cancel the DAG's unfinished backfills (before creating a new one), then exit.")
    args = parser.parse_args()
    airflow_home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    # scripts/airflow_env.sh sets the first; a caller that only chose the port sets the second
    base_url = (os.environ.get("AIRFLOW__API__BASE_URL")
                or f"http://127.0.0.1:{os.environ.get('SEQREC_AIRFLOW_PORT', '8080')}")
    try:
        api = Api(base_url, args.username, _password(airflow_home, args.username))
        if args.cancel_unfinished_backfills:
            for backfill_id in api.cancel_unfinished_backfills(args.dag_id):
                print(f"cancelled unfinished backfill {backfill_id} of {args.dag_id}")
            return 0
        ok = follow(api, args.dag_id, args.from_date, args.to_date, args.timeout, args.poll)
    except urllib.error.URLError as exc:
        print(f"cannot reach the Airflow API at {base_url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
