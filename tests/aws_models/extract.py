#!/usr/bin/env python3
"""The AWS operations the credential sources call, checked against botocore's models.

    python tests/aws_models/extract.py --write   # regenerate operations.json
    python tests/aws_models/extract.py           # CI: compare, and validate samples.json

`operations.json` holds, for each operation, what the protocol needs (JSON 1.1 target,
content type, signing name) and its input, output and error shapes as botocore's model
(pinned in requirements.txt) describes them. The Rust test fixture
(tests/it/common/aws_api.rs) checks every request it receives against it and answers in
the output shape. This script fails when the committed file no longer matches botocore.

`samples.json` holds the exact requests the tests expect the proxy to send and answers
the fixture gives; each request is validated with botocore's own parameter validator
and serialized with botocore's JSON serializer (headers and body must come out as the
proxy sends them), and each answer is parsed with botocore's JSON parser (the error code
or the output must come out as the proxy reads them).
Prints "aws models: N passed, M failed".
"""
import json
import pathlib
import sys

import botocore
import botocore.parsers
import botocore.serialize
import botocore.session
import botocore.validate

HERE = pathlib.Path(__file__).resolve().parent
OPERATIONS = HERE / "operations.json"
SAMPLES = HERE / "samples.json"
WANTED = [
    ("cognito-idp", "GetClientToken"),
    ("secretsmanager", "GetSecretValue"),
    ("ssm", "GetParameter"),
]
CONSTRAINTS = ("min", "max", "pattern", "sensitive", "enum")


def shape(s, depth=0):
    """A shape as plain JSON: its type, constraints and members (recursively)."""
    out = {"type": s.type_name}
    for key in CONSTRAINTS:
        if key in s.metadata:
            out[key] = s.metadata[key]
    if depth > 6:
        return out
    if s.type_name == "structure":
        out["required"] = list(s.required_members)
        out["members"] = {n: shape(m, depth + 1) for n, m in s.members.items()}
    elif s.type_name == "list":
        out["member"] = shape(s.member, depth + 1)
    elif s.type_name == "map":
        out["key"] = shape(s.key, depth + 1)
        out["value"] = shape(s.value, depth + 1)
    return out


def operations():
    session = botocore.session.get_session()
    ops = {}
    for service, name in WANTED:
        model = session.get_service_model(service)
        op = model.operation_model(name)
        meta = model.metadata
        ops[f"{service}.{name}"] = {
            "service": service,
            "apiVersion": meta["apiVersion"],
            "protocol": model.protocol,
            "jsonVersion": meta["jsonVersion"],
            "contentType": "application/x-amz-json-" + meta["jsonVersion"],
            "target": f"{meta['targetPrefix']}.{name}",
            "signingName": model.signing_name,
            "method": op.http["method"],
            "requestUri": op.http["requestUri"],
            "authType": op.auth_type,
            "input": shape(op.input_shape),
            "output": shape(op.output_shape),
            "errors": [e.name for e in op.error_shapes],
        }
    return {"botocore": botocore.__version__, "operations": ops}


def check_samples(results):
    session = botocore.session.get_session()
    samples = json.loads(SAMPLES.read_text())
    for sample in samples:
        label = sample["name"]
        service, name = sample["operation"].split(".")
        op = session.get_service_model(service).operation_model(name)
        if "request" in sample:
            report = botocore.validate.ParamValidator().validate(sample["request"], op.input_shape)
            if report.has_errors():
                results.append((False, f"{label}: botocore refuses the request: {report.generate_report()}"))
                continue
            request = botocore.serialize.create_serializer(op.metadata["protocol"]).serialize_to_request(
                sample["request"], op
            )
            headers = {k.lower(): v for k, v in request["headers"].items()}
            body = json.loads(request["body"] or b"{}")
            wanted = {k.lower(): v for k, v in sample["headers"].items()}
            problems = [
                f"header {k}: botocore sends {headers.get(k)!r}, the proxy {v!r}"
                for k, v in wanted.items()
                if headers.get(k) != v
            ]
            if body != sample["request"]:
                problems.append(f"body: botocore sends {body}, the proxy {sample['request']}")
            if request["method"] != "POST" or request["url_path"] != "/":
                problems.append(f"botocore sends {request['method']} {request['url_path']}")
            results.append((not problems, f"{label}: request " + ("; ".join(problems) or "as botocore sends it")))
        if "response" in sample:
            response = sample["response"]
            parsed = botocore.parsers.create_parser(op.metadata["protocol"]).parse(
                {
                    "status_code": response["status"],
                    "headers": response.get("headers", {}),
                    "body": json.dumps(response["body"]).encode(),
                },
                op.output_shape,
            )
            if response["status"] >= 300:
                code = parsed.get("Error", {}).get("Code")
                ok = code == sample["code"] and code in [e.name for e in op.error_shapes] + sample.get("extra_codes", [])
                results.append((ok, f"{label}: error answer parses as {code!r} (want {sample['code']!r})"))
            else:
                parsed.pop("ResponseMetadata", None)
                ok = parsed == response["body"]
                results.append((ok, f"{label}: answer parses as {parsed}"))


def main():
    current = operations()
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        OPERATIONS.write_text(text)
        print(f"wrote {OPERATIONS} from botocore {botocore.__version__}")
        return 0
    results = []
    committed = OPERATIONS.read_text()
    results.append(
        (
            committed == text,
            f"operations.json matches botocore {botocore.__version__}"
            if committed == text
            else f"operations.json differs from botocore {botocore.__version__}: run extract.py --write and review the diff",
        )
    )
    check_samples(results)
    for ok, text in results:
        print(("PASS " if ok else "FAIL ") + text)
    passed = sum(1 for ok, _ in results if ok)
    failed = len(results) - passed
    print(f"aws models: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
