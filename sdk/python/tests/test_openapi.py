"""The OpenAPI document, checked by tools nobody here wrote: it is a valid OpenAPI 3.1
document (openapi-spec-validator), and its request schemas agree with the server, which
accepts the bodies they allow and refuses the ones they do not (jsonschema)."""

from __future__ import annotations

import json
from typing import Any
import urllib.error
import urllib.request

import jsonschema  # type: ignore[import-untyped]
from openapi_spec_validator import validate

from conftest import Dev


def fetch(dev: Dev, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(dev.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {dev.token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def request_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    schema = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    # Resolve references against the whole document.
    return {**schema, "components": doc["components"]}


def test_the_document_is_valid_openapi_31(dev: Dev) -> None:
    status, doc = fetch(dev, "GET", "/v1/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    validate(doc)
    bodies = [
        (path, method)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if "requestBody" in op
    ]
    assert len(bodies) > 25, bodies


def test_request_schemas_agree_with_the_server(dev: Dev) -> None:
    _, doc = fetch(dev, "GET", "/v1/openapi.json")
    write = request_schema(doc, "put", "/v1/secrets/{path}")
    cases = [
        ({"data": {"password": "pw"}, "metadata": {"tags": ["db"]}}, True),
        ({"data": {"password": "pw"}, "options": {"max_versions": 3}}, True),
        ({"data": {"password": "pw"}, "colour": "red"}, False),
        ({"metadata": {"tags": ["db"]}}, False),
    ]
    for n, (body, allowed) in enumerate(cases):
        valid = jsonschema.Draft202012Validator(write).is_valid(body)
        assert valid == allowed, (body, valid)
        status, answer = fetch(dev, "PUT", f"/v1/secrets/openapi/case{n}", body)
        assert (status < 300) == allowed, (body, status, answer)

    policy = request_schema(doc, "post", "/v1/policies")
    body = {"name": "svc", "rules": [{"path_pattern": "svc/**", "permissions": ["read"]}]}
    assert jsonschema.Draft202012Validator(policy).is_valid(body)
    status, answer = fetch(dev, "POST", "/v1/policies", body)
    assert status == 201, answer
    wrong = {"name": "svc2", "rules": [{"path_pattern": "svc/**", "permissions": ["fly"]}]}
    assert not jsonschema.Draft202012Validator(policy).is_valid(wrong)
    status, _ = fetch(dev, "POST", "/v1/policies", wrong)
    assert status >= 400


def test_the_batch_write_schema_agrees_with_the_server(dev: Dev) -> None:
    _, doc = fetch(dev, "GET", "/v1/openapi.json")
    post = request_schema(doc, "post", "/v1/secrets/{path}")
    good = {"writes": [{"path": "bw/a", "data": {"k": "v"}, "metadata": {"tags": ["x"]}}]}
    bad = {"writes": [{"data": {"k": "v"}}]}
    assert jsonschema.Draft202012Validator(post).is_valid(good)
    assert not jsonschema.Draft202012Validator(post).is_valid(bad)
    status, answer = fetch(dev, "POST", "/v1/secrets/batch/write", good)
    assert status == 200, answer
    assert answer["written"][0]["path"] == "bw/a"
    status, _ = fetch(dev, "POST", "/v1/secrets/batch/write", bad)
    assert status == 400


def response_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    schema = doc["paths"][path][method]["responses"]["2XX"]["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def test_typed_answers_match_their_schemas(dev: Dev) -> None:
    _, doc = fetch(dev, "GET", "/v1/openapi.json")
    calls = [
        ("put", "/v1/secrets/{path}", "PUT", "/v1/secrets/typed/a", {"data": {"k": "v"}, "metadata": {"tags": ["t"]}}),
        ("put", "/v1/secrets/{path}", "PUT", "/v1/secrets/typed/a", {"data": {"k": "v2"}}),
        ("get", "/v1/secrets/{path}", "GET", "/v1/secrets/typed/a", None),
        ("get", "/v1/secrets", "GET", "/v1/secrets?prefix=typed/", None),
        ("get", "/v1/metadata/{path}", "GET", "/v1/metadata/typed/a", None),
        ("patch", "/v1/metadata/{path}", "PATCH", "/v1/metadata/typed/a", {"metadata": {"owner": "x"}}),
        ("get", "/v1/versions/{path}", "GET", "/v1/versions/typed/a", None),
        ("delete", "/v1/secrets/{path}", "DELETE", "/v1/secrets/typed/a", None),
        ("post", "/v1/restore/{path}", "POST", "/v1/restore/typed/a", None),
        ("get", "/v1/auth/whoami", "GET", "/v1/auth/whoami", None),
    ]
    for method, template, verb, path, body in calls:
        status, answer = fetch(dev, verb, path, body)
        assert status < 300, (path, answer)
        schema = response_schema(doc, method, template)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(answer))
        assert not errors, (verb, path, [e.message for e in errors])
    # Tokens: listed and revoked answers, never a token value.
    fetch(dev, "POST", "/v1/identities", {"identity_id": "sa:typed"})
    status, issued = fetch(dev, "POST", "/v1/auth/tokens", {"identity_id": "sa:typed", "scopes": ["secrets:read"]})
    assert status == 201, issued
    for method, template, verb, path in [
        ("get", "/v1/auth/tokens", "GET", "/v1/auth/tokens?identity_id=sa:typed"),
        ("delete", "/v1/auth/tokens/{id}", "DELETE", f"/v1/auth/tokens/{issued['token_id']}"),
    ]:
        status, answer = fetch(dev, verb, path)
        assert status < 300, (path, answer)
        errors = list(jsonschema.Draft202012Validator(response_schema(doc, method, template)).iter_errors(answer))
        assert not errors, (verb, path, [e.message for e in errors])
        assert issued["token"] not in json.dumps(answer)
    # Client credentials: issued (the secret shown once), listed and revoked.
    status, cred = fetch(dev, "POST", "/v1/identities/sa:typed/credentials", {"scopes": ["secrets:read"]})
    assert status == 201, cred
    checks = [
        ("post", "/v1/identities/{id}/credentials", cred),
        ("get", "/v1/identities/{id}/credentials", fetch(dev, "GET", "/v1/identities/sa:typed/credentials")[1]),
        ("delete", "/v1/identities/{id}/credentials/{credential}",
         fetch(dev, "DELETE", f"/v1/identities/sa:typed/credentials/{cred['credential_id']}")[1]),
    ]
    for method, template, answer in checks:
        errors = list(jsonschema.Draft202012Validator(response_schema(doc, method, template)).iter_errors(answer))
        assert not errors, (method, template, [e.message for e in errors])
    assert cred["client_secret"] not in json.dumps(checks[1][2])
    # A schema is not a rubber stamp: an answer missing a field fails it.
    read = response_schema(doc, "get", "/v1/secrets/{path}")
    _, answer = fetch(dev, "GET", "/v1/secrets/typed/a")
    del answer["version"]
    assert not jsonschema.Draft202012Validator(read).is_valid(answer)


def test_webhook_answers_match_their_schemas() -> None:
    from conftest import Dev

    dev = Dev("--allow-host", "127.0.0.1:9")
    try:
        _, doc = fetch(dev, "GET", "/v1/openapi.json")
        status, hook = fetch(dev, "POST", "/v1/webhooks", {
            "name": "typed", "url": "http://127.0.0.1:9/hook", "secret": "whsec_typed_0123456789",
            "events": ["secret.created"]})
        assert status == 201, hook
        hid = hook["id"]
        answers = [
            ("post", "/v1/webhooks", hook),
            ("get", "/v1/webhooks", fetch(dev, "GET", "/v1/webhooks")[1]),
            ("patch", "/v1/webhooks/{id}", fetch(dev, "PATCH", f"/v1/webhooks/{hid}", {"enabled": True})[1]),
            ("post", "/v1/webhooks/{id}/test", fetch(dev, "POST", f"/v1/webhooks/{hid}/test")[1]),
            ("get", "/v1/webhooks/{id}", fetch(dev, "GET", f"/v1/webhooks/{hid}")[1]),
            ("get", "/v1/webhooks/{id}/deliveries", fetch(dev, "GET", f"/v1/webhooks/{hid}/deliveries")[1]),
        ]
        for method, template, answer in answers:
            errors = list(jsonschema.Draft202012Validator(response_schema(doc, method, template)).iter_errors(answer))
            assert not errors, (method, template, answer, [e.message for e in errors])
            assert "whsec_typed" not in json.dumps(answer), "the signing secret is never shown"
        assert answers[4][2]["last_delivery"]["status"] == "failed"
    finally:
        dev.stop()


def test_rotation_audit_policy_plugin_and_token_answers_match_their_schemas(dev: Dev) -> None:
    _, doc = fetch(dev, "GET", "/v1/openapi.json")
    status, pol = fetch(dev, "POST", "/v1/rotation/policies", {
        "name": "typed", "interval": "7d", "auto_generate": True, "fields": ["password"]})
    assert status == 201, pol
    fetch(dev, "PUT", "/v1/secrets/typed/db", {"data": {"user": "u", "password": "first"}})
    fetch(dev, "POST", "/v1/identities", {"identity_id": "sa:typed-grant"})
    status, cred = fetch(dev, "POST", "/v1/identities/sa:typed-grant/credentials", {"scopes": ["secrets:read"]})
    assert status == 201, cred
    grant_req = urllib.request.Request(
        dev.url + "/v1/auth/token", method="POST",
        data=json.dumps({"grant_type": "client_credentials", "client_id": "sa:typed-grant",
                         "client_secret": cred["client_secret"]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(grant_req) as resp:
        grant = json.loads(resp.read())
    answers = [
        ("post", "/v1/rotation/policies", (201, pol)),
        ("post", "/v1/rotation/policies/{id}/secrets",
         fetch(dev, "POST", "/v1/rotation/policies/rot_typed/secrets", {"secret_path": "typed/db"})),
        ("get", "/v1/rotation/policies", fetch(dev, "GET", "/v1/rotation/policies")),
        ("get", "/v1/rotation/policies/{id}", fetch(dev, "GET", "/v1/rotation/policies/rot_typed")),
        ("patch", "/v1/rotation/policies/{id}",
         fetch(dev, "PATCH", "/v1/rotation/policies/rot_typed", {"description": "typed"})),
        ("post", "/v1/rotation/policies/{id}/rotate", fetch(dev, "POST", "/v1/rotation/policies/rot_typed/rotate")),
        ("get", "/v1/rotation/status", fetch(dev, "GET", "/v1/rotation/status")),
        ("post", "/v1/rotation/policies/{id}/disable", fetch(dev, "POST", "/v1/rotation/policies/rot_typed/disable")),
        ("post", "/v1/rotation/policies/{id}/enable", fetch(dev, "POST", "/v1/rotation/policies/rot_typed/enable")),
        ("get", "/v1/audit/logs", fetch(dev, "GET", "/v1/audit/logs?limit=5")),
        ("get", "/v1/audit/secrets/{path}", fetch(dev, "GET", "/v1/audit/secrets/typed/db")),
        ("get", "/v1/audit/identities/{id}", fetch(dev, "GET", "/v1/audit/identities/sa:typed-grant")),
        ("get", "/v1/audit/summary", fetch(dev, "GET", "/v1/audit/summary")),
        ("get", "/v1/audit/verify", fetch(dev, "GET", "/v1/audit/verify")),
        ("post", "/v1/audit/prune", fetch(dev, "POST", "/v1/audit/prune", {"older_than": "3650d"})),
        ("get", "/v1/policies", fetch(dev, "GET", "/v1/policies")),
        ("get", "/v1/plugins", fetch(dev, "GET", "/v1/plugins")),
        ("get", "/v1/plugins/{name}", fetch(dev, "GET", "/v1/plugins/types")),
        ("post", "/v1/plugins/verify", fetch(dev, "POST", "/v1/plugins/verify")),
        ("post", "/v1/auth/introspect", fetch(dev, "POST", "/v1/auth/introspect", {"token": grant["access_token"]})),
        ("post", "/v1/auth/introspect", fetch(dev, "POST", "/v1/auth/introspect", {"token": "skt_not_a_token"})),
        ("post", "/v1/auth/token", (200, grant)),
        ("post", "/v1/sys/verify", fetch(dev, "POST", "/v1/sys/verify")),
    ]
    for method, template, (status, answer) in answers:
        assert status < 300, (method, template, answer)
        errors = list(jsonschema.Draft202012Validator(response_schema(doc, method, template)).iter_errors(answer))
        assert not errors, (method, template, answer, [e.message for e in errors])
    rotated = answers[5][2][1]["rotated"]
    assert [r["status"] for r in rotated] == ["completed"], rotated
    introspected = answers[19][2][1]
    assert introspected["active"] is True and introspected["identity_id"] == "sa:typed-grant"
    assert answers[20][2][1] == {"active": False}
    # The rotation's outcome is a tagged union: an unknown status fails the schema.
    bogus = {"policy_id": "rot_typed", "rotated": [{"status": "exploded", "secret_path": "typed/db"}]}
    assert not jsonschema.Draft202012Validator(
        response_schema(doc, "post", "/v1/rotation/policies/{id}/rotate")).is_valid(bogus)
