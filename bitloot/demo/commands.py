"""`bitloot demo` (one order end to end, then exit) and `bitloot up` (leave it running)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from types import FrameType

from bitloot.config import Settings, load_settings
from bitloot.demo.demo import Progress, print_failure, run_demo
from bitloot.demo.stack import LocalStack
from bitloot.processes import free_port


def _interrupt_on_sigterm() -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _start(stack: LocalStack, progress: Progress) -> None:
    progress.begin("database")
    stack.prepare()
    where = "DATABASE_URL" if stack.settings.database_url else f"embedded, {stack.data_dir / 'pg'}"
    progress.done("database", f"{where}; migrated; catalog seeded")
    progress.begin("services")
    stack.start_all()
    progress.done("services", f"API {stack.api}, simulators {stack.sim}, 1 worker")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run one order from creation to the revealed key; exit 0 on success."""
    _interrupt_on_sigterm()
    progress = Progress()
    stack = LocalStack(settings, api_port=args.port or free_port(), sim_port=free_port())
    try:
        _start(stack, progress)
        keys = asyncio.run(run_demo(stack, progress))
        print(f"demo finished: {keys} key(s) bought, stored encrypted, emailed and revealed.")
        return 0
    except KeyboardInterrupt:
        print("\nbitloot demo: interrupted; stopping everything")
        return 130
    except Exception as exc:
        print_failure(progress, exc)
        print(f"logs: {stack.data_dir / 'logs'}")
        return 1
    finally:
        stack.stop()


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start the stack, make one demo order, print the URLs, run until Ctrl-C."""
    from bitloot.auth.tokens import mint_user_token

    _interrupt_on_sigterm()
    progress = Progress()
    stack = LocalStack(settings, api_port=args.port, sim_port=args.sim_port)
    try:
        _start(stack, progress)
        asyncio.run(run_demo(stack, progress))
        env_settings = load_settings(**_settings_from_env(stack.env))
        token = mint_user_token(env_settings, sub="demo-admin", admin=True, ttl=12 * 3600)
        print(
            "\nBitLoot is running:\n"
            f"  API                  {stack.api}   (health {stack.api}/readyz)\n"
            f"  Kinguin simulator    {stack.sim}/kinguin/sim/orders\n"
            f"  NOWPayments sim      {stack.sim}/nowpayments/sim/ipns\n"
            f"  metrics (API)        http://127.0.0.1:{stack.env['BITLOOT_METRICS_PORT']}/metrics\n"
            f"  metrics (worker)     "
            f"http://127.0.0.1:{stack.env['BITLOOT_WORKER_METRICS_PORT']}/metrics\n"
            f"  logs                 {stack.data_dir / 'logs'}\n"
            f"  admin token (12 h)   {token}\n"
            f"  try                  curl -H 'Authorization: Bearer <admin token>' "
            f"{stack.api}/admin/payments\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        stopped = threading.Event()
        while not stopped.wait(1.0):
            for name in list(stack.procs):
                stack.check_alive(name)
        return 0
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except Exception as exc:
        print_failure(progress, exc)
        print(f"logs: {stack.data_dir / 'logs'}")
        return 1
    finally:
        stack.stop()


def _settings_from_env(env: dict[str, str]) -> dict[str, object]:
    return {
        "jwt_secret": env["BITLOOT_JWT_SECRET"],
        "data_dir": env["BITLOOT_DATA_DIR"],
    }


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot demo` and `bitloot up`."""
    demo = sub.add_parser("demo", help="one order end to end on one machine, then exit")
    demo.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    demo.set_defaults(handler=cmd_demo)
    up = sub.add_parser("up", help="the local stack, left running, with a demo order")
    up.add_argument("--port", type=int, default=8080, help="API port")
    up.add_argument("--sim-port", type=int, default=8090, help="simulators' port")
    up.set_defaults(handler=cmd_up)
