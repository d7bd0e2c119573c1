"""backend.openapi.spec: a well-formed document, fresh on every call."""
from backend.openapi import PATHS, spec


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_operation_is_named_once_and_answers_200():
    doc = spec()
    assert list(doc["paths"]) == list(PATHS)
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids)) == len(PATHS)
    for path, method, op in _operations(doc):
        assert "200" in op["responses"], (path, method)
        for code, answer in op["responses"].items():
            schema = answer["content"]["application/json"]["schema"]
            assert code == "200" or schema == {"$ref": "#/components/schemas/Error"}


def test_only_health_is_open_and_bodies_are_required_json():
    doc = spec()
    open_ops = [path for path, _, op in _operations(doc) if op.get("security") == []]
    assert open_ops == ["/health"]
    for _, method, op in _operations(doc):
        if method == "post":
            assert op["requestBody"]["required"] is True
            assert list(op["requestBody"]["content"]) == ["application/json"]


def test_spec_is_a_fresh_dict():
    first = spec()
    first["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["project"]["oneOf"].clear()
    assert spec()["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["project"]["oneOf"]
