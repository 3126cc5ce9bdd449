"""`bitloot sim`: the Kinguin and NOWPayments simulators in one aiohttp app.

Kinguin lives under `/kinguin` (so `BITLOOT_KINGUIN_API_URL=http://HOST:PORT/kinguin`) and
NOWPayments under `/nowpayments` (`BITLOOT_NOWPAYMENTS_API_URL=http://HOST:PORT/nowpayments/v1`).
Their credentials are BitLoot's own settings, so one environment configures both sides;
unset, development defaults are used and printed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import structlog
from aiohttp import web
from pydantic import SecretStr

from bitloot.config import Settings
from bitloot.logs import configure_logging
from bitloot.sim.kinguin import create_kinguin_sim
from bitloot.sim.nowpayments import create_nowpayments_sim

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SimConfig:
    """Credentials the simulators check and use, and where BitLoot's API is."""

    kinguin_api_key: str = "sim-kinguin-api-key"
    kinguin_webhook_secret: str = "sim-kinguin-webhook-secret"  # noqa: S105 - a dev default
    nowpayments_api_key: str = "sim-nowpayments-api-key"
    nowpayments_ipn_secret: str = "sim-nowpayments-ipn-secret"  # noqa: S105 - a dev default
    api_public_url: str = "http://127.0.0.1:8080"
    seed: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SimConfig:
        """Take every credential that is configured, the defaults for the rest."""
        default = cls()

        def value(secret: SecretStr | None, fallback: str) -> str:
            return secret.get_secret_value() if secret else fallback

        return cls(
            kinguin_api_key=value(settings.kinguin_api_key, default.kinguin_api_key),
            kinguin_webhook_secret=value(
                settings.kinguin_webhook_secret, default.kinguin_webhook_secret
            ),
            nowpayments_api_key=value(settings.nowpayments_api_key, default.nowpayments_api_key),
            nowpayments_ipn_secret=value(
                settings.nowpayments_ipn_secret, default.nowpayments_ipn_secret
            ),
            api_public_url=settings.public_url,
        )


def create_sim_app(config: SimConfig, *, sim_public_url: str) -> web.Application:
    """Both simulators mounted on one app; `sim_public_url` is where it is reachable."""
    app = web.Application()
    app.add_subapp(
        "/kinguin",
        create_kinguin_sim(
            api_key=config.kinguin_api_key,
            webhook_url=f"{config.api_public_url}/webhooks/kinguin",
            webhook_secret=config.kinguin_webhook_secret,
            seed=config.seed,
        ),
    )
    app.add_subapp(
        "/nowpayments",
        create_nowpayments_sim(
            api_key=config.nowpayments_api_key,
            ipn_secret=config.nowpayments_ipn_secret,
            public_base_url=sim_public_url,
        ),
    )
    return app


def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    """Run the simulators until SIGTERM/SIGINT."""
    configure_logging(settings.log_format)
    config = SimConfig.from_settings(settings)
    url = f"http://{args.host}:{args.port}"
    log.info(
        "sim.starting",
        kinguin_api_url=f"{url}/kinguin",
        nowpayments_api_url=f"{url}/nowpayments/v1",
        webhooks_to=config.api_public_url,
    )
    web.run_app(
        create_sim_app(config, sim_public_url=url),
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda _banner: log.info("sim.listening", url=url),
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot sim`."""
    sim = sub.add_parser("sim", help="run the Kinguin and NOWPayments simulators")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.set_defaults(handler=cmd_sim)
