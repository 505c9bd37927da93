"""``kave run`` as a process manager: a crashed worker is restarted while the receiver keeps
answering, API tokens outlive a restart of the whole stack, and the worker gets the
secrets the hand-off routes name."""

from __future__ import annotations

import base64
import signal
import stat
from pathlib import Path

import httpx
import psutil

from shared.webhook import WEBHOOK_PATH
from tests.kave.support import env_without_kave_settings, kave, kave_run
from tests.services import FIXTURES, REPO, wait_until

PASSWORD = "ivory lantern drifts past nine"
ROUTES = REPO / "tests" / "fixtures" / "handoff" / "routes.yaml"  # secret_env: ..._PLATFORM
SECRET = "whsec_" + base64.b64encode(b"r" * 32).decode()


def _live_children(run_pid: int) -> list[tuple[psutil.Process, list[str]]]:
    """`kave run`'s children with their command lines; one that exited and waits to be
    restarted (a zombie for a moment) has none and is left out."""
    found = []
    for child in psutil.Process(run_pid).children():
        try:
            found.append((child, child.cmdline()))
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


def _worker(run_pid: int) -> psutil.Process:
    """The Celery worker that `kave run` started (a direct child, not Flower)."""
    workers = [
        child
        for child, cmdline in _live_children(run_pid)
        if "worker.main" in cmdline and "worker" in cmdline
    ]
    assert len(workers) == 1, workers
    return workers[0]


def _receiver(run_pid: int) -> psutil.Process:
    (receiver,) = (
        child for child, cmdline in _live_children(run_pid) if "receiver.app:create_app" in cmdline
    )
    return receiver


def test_the_worker_gets_the_secret_a_route_names_and_only_it(tmp_path: Path) -> None:
    env = {
        **env_without_kave_settings(),
        "KAVE_HANDOFF_ROUTES_FILE": str(ROUTES),
        "KAVE_HANDOFF_SECRET_PLATFORM": SECRET,
        "KAVE_NOT_A_SETTING": "dropped",
    }
    # kave_run waits for the worker's "ready.": a worker without the secret refuses the
    # routes file and never gets there.
    with kave_run(tmp_path, env) as run:
        worker = _worker(run.process.pid).environ()
        receiver = _receiver(run.process.pid).environ()
    assert run.exit_code == 0
    assert worker["KAVE_HANDOFF_SECRET_PLATFORM"] == SECRET
    assert worker["KAVE_HANDOFF_ROUTES_FILE"] == str(ROUTES)
    assert "KAVE_NOT_A_SETTING" not in worker
    # Only the worker hands off: the others never see the secret.
    assert "KAVE_HANDOFF_SECRET_PLATFORM" not in receiver
    assert SECRET not in run.output


def test_a_route_secret_kept_in_dotenv_reaches_the_worker(tmp_path: Path) -> None:
    # As settings may be: `make run` reads .env in the directory it starts in.
    (tmp_path / ".env").write_text(
        f"KAVE_HANDOFF_ROUTES_FILE={ROUTES}\nKAVE_HANDOFF_SECRET_PLATFORM={SECRET}\n",
        encoding="utf-8",
    )
    with kave_run(tmp_path, env_without_kave_settings()) as run:
        worker = _worker(run.process.pid).environ()
        receiver = _receiver(run.process.pid).environ()
    assert run.exit_code == 0
    assert worker["KAVE_HANDOFF_SECRET_PLATFORM"] == SECRET
    assert "KAVE_HANDOFF_SECRET_PLATFORM" not in receiver


def test_kave_run_refuses_to_start_when_a_route_secret_is_missing(tmp_path: Path) -> None:
    env = {**env_without_kave_settings(), "KAVE_HANDOFF_ROUTES_FILE": str(ROUTES)}
    result = kave(["run", "--var-dir", str(tmp_path / "var")], env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "kave: route 'invoices': KAVE_HANDOFF_SECRET_PLATFORM must hold a secret and is not "
        "set in this environment" in result.stderr
    )
    assert not (tmp_path / "var").exists()  # nothing was started


def test_a_killed_worker_is_restarted_while_the_receiver_keeps_answering(tmp_path: Path) -> None:
    env = env_without_kave_settings()
    with kave_run(tmp_path, env) as run:
        webhook = f"http://127.0.0.1:{run.port}{WEBHOOK_PATH}"
        worker = _worker(run.process.pid)
        left_behind = [worker, *worker.children(recursive=True)]
        assert len(left_behind) > 1  # its prefork pool and embedded beat
        worker.send_signal(signal.SIGKILL)

        answers: list[int] = []

        def restarted() -> bool:
            # Mandrill's URL check, answered all along by the receiver.
            answers.append(httpx.head(webhook, timeout=5).status_code)
            return "worker restarted" in run.output

        wait_until(restarted, 60, "the worker's restart", interval=0.2)
        assert answers
        assert set(answers) == {200}
        assert "worker exited with code -9; restarting in 1 s" in run.output
        assert run.process.poll() is None
        successor = _worker(run.process.pid)
        assert successor.pid != worker.pid
        # Nothing of the killed worker (its pool, its embedded beat) is left running.
        wait_until(lambda: not any(p.is_running() for p in left_behind), 10, "the old worker's end")

        sent = kave(["send", str(FIXTURES / "inbound_with_txt_attachment.json")], env, tmp_path)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(
            lambda: "sample.txt" in kave(["emails"], env, tmp_path).stdout,
            120,
            "the email stored by the new worker",
            interval=0.5,
        )
    assert run.exit_code == 0
    assert "Kave stopped." in run.output


def test_api_tokens_outlive_a_restart(tmp_path: Path) -> None:
    env = env_without_kave_settings()
    with kave_run(tmp_path, env, "first.log") as first:
        created = kave(["users", "create", "ops"], env, tmp_path, stdin=PASSWORD + "\n")
        assert created.returncode == 0, created.stderr
        answer = httpx.post(
            first.api_base + "/api/v1/auth/token",
            data={"username": "ops", "password": PASSWORD},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
    assert first.exit_code == 0

    secret = tmp_path / "var" / "dev-jwt-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # This time with Flower's password configured: `kave run` must not print it.
    flower_password = "configured-flower-x9Qm2vL7"
    env = {**env, "FLOWER_BASIC_AUTH": f"ops:{flower_password}"}
    with kave_run(tmp_path, env, "second.log") as second:
        assert flower_password not in second.output
        emails = httpx.get(
            second.api_base + "/api/v1/emails",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert emails.status_code == 200, emails.text
        forged = httpx.get(
            second.api_base + "/api/v1/emails",
            headers={"Authorization": f"Bearer {token[:-4]}AAAA"},
            timeout=10,
        )
        assert forged.status_code == 401
    assert second.exit_code == 0
