"""The agent card: the one skill (build and test a piece of software), the API keys as security
schemes, streaming, and the JSON-RPC interface in protocol 1.0 and 0.3 at the same URL."""

from __future__ import annotations

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol

from backend import __version__
from backend.config import Settings

JSONRPC_PATH = "/a2a"
# The 0.3 well-known path, still read by many peers.
LEGACY_AGENT_CARD_PATH = "/.well-known/agent.json"
AGENT_CARD_PATHS = (AGENT_CARD_WELL_KNOWN_PATH, LEGACY_AGENT_CARD_PATH)

BEARER_SCHEME, API_KEY_SCHEME = "bearer", "apiKey"

SKILL_DESCRIPTION = (
    "Send what to build as a message. Mike plans it and the task turns input-required with the "
    "plan (text and a data part). Answer in the same task: 'approve' (or yes, ok, lgtm) starts the "
    "team coding, any other text rejects the plan with that text as feedback and Mike re-plans; a "
    "data part {\"decision\": \"approve\"|\"reject\", \"feedback\": \"...\"} says the same for programs. "
    "Alex codes, Bob writes pytest tests that run in a sandbox, Charlie reviews. The code, tests, "
    "plan.json, review.md and sandbox-report.json come back as artifacts."
)


def build_agent_card(settings: Settings) -> AgentCard:
    url = f"{settings.public_url}{JSONRPC_PATH}"
    card = AgentCard(
        name="MGX Agent API",
        description=(
            "A software team as a service: Mike plans, a human approves the plan, Alex codes, Bob "
            "writes tests that run in a sandbox, Charlie reviews, with revision rounds."
        ),
        version=__version__,
        provider=AgentProvider(organization="MGX Agent API", url=settings.public_url),
        documentation_url=f"{settings.public_url}/docs",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC, protocol_version=PROTOCOL_VERSION_1_0),
            AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC, protocol_version=PROTOCOL_VERSION_0_3),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id="build-and-test-software",
                name="Build and test a piece of software",
                description=SKILL_DESCRIPTION,
                tags=["coding", "testing", "code review", "python"],
                examples=["Write fizzbuzz(n) returning the FizzBuzz sequence as a list of strings, with tests."],
                input_modes=["text/plain", "application/json"],
                output_modes=["text/plain", "application/json", "text/x-python", "text/markdown"],
            )
        ],
    )
    if settings.api_keys is not None:
        card.security_schemes[BEARER_SCHEME].CopyFrom(
            SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer", description="An API key of the service (API_KEYS), as a bearer token."
                )
            )
        )
        card.security_schemes[API_KEY_SCHEME].CopyFrom(
            SecurityScheme(
                api_key_security_scheme=APIKeySecurityScheme(
                    location="header", name="X-API-Key", description="The same API key, as a header."
                )
            )
        )
        for scheme in (BEARER_SCHEME, API_KEY_SCHEME):
            requirement = SecurityRequirement()
            requirement.schemes[scheme].CopyFrom(StringList())
            card.security_requirements.append(requirement)
    return card
