"""Every GraphQL document the app sends parses and validates against the Admin API schema subset."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import graphql
import pytest

from app.shopify import client

SCHEMA_FILE = Path(client.__file__).parent / "admin-2026-07.subset.graphql"
DOCUMENTS = sorted(client.DOCUMENTS.glob("*.graphql"))


@cache
def schema() -> graphql.GraphQLSchema:
    return graphql.build_schema(SCHEMA_FILE.read_text())


def validation_errors(source: str) -> list[str]:
    return [error.message for error in graphql.validate(schema(), graphql.parse(source))]


def test_there_are_documents_to_check():
    assert len(DOCUMENTS) >= 3


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_document_is_valid_against_the_schema(path: Path):
    assert validation_errors(path.read_text()) == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_document_is_one_operation_named_after_its_file(path: Path):
    # client.query(name) loads graphql/<name>.graphql; mutate(name) reads data[name].
    [operation] = graphql.parse(path.read_text()).definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    assert operation.name is not None and operation.name.value == path.stem
    assert client.document(path.stem) == path.read_text()


def _is_mutation(path: Path) -> bool:
    try:
        [operation] = graphql.parse(path.read_text()).definitions
    except (graphql.GraphQLError, ValueError):
        return True  # collected anyway, so that the broken file fails here as well as above
    return getattr(operation, "operation", None) == graphql.OperationType.MUTATION


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if _is_mutation(p)], ids=lambda p: p.name)
def test_mutation_asks_for_user_errors(path: Path):
    # client.mutate raises on userErrors; a mutation that does not select them would hide refusals.
    selections = graphql.parse(path.read_text()).definitions[0].selection_set.selections
    [field] = selections
    assert "userErrors" in {s.name.value for s in field.selection_set.selections}


@pytest.mark.parametrize(("source", "complaint"), [
    ("query q { webhookSubscriptions(first: 1) { nodes { id topik } } }", "topik"),
    ("query q { webhookSubscriptions(first: 1, topic: APP_UNINSTALLED) { nodes { id } } }", "topic"),
    ("mutation m { webhookSubscriptionCreate(topic: APP_UNINSTALED, webhookSubscription: {uri: \"x\"}) "
     "{ userErrors { field } } }", "APP_UNINSTALED"),
    ("query q($first: Int!) { webhookSubscriptions(first: $frist) { nodes { id } } }", "frist"),
], ids=["misspelt-field", "unknown-argument", "misspelt-enum-value", "undefined-variable"])
def test_misspelt_document_fails_validation(source: str, complaint: str):
    errors = validation_errors(source)
    assert errors, "the schema check accepted a broken document"
    assert any(complaint in message for message in errors)


def test_schema_is_the_admin_api_not_an_empty_stub():
    mutation = schema().mutation_type
    assert mutation is not None and "webhookSubscriptionCreate" in mutation.fields
    assert "APP_UNINSTALLED" in schema().get_type("WebhookSubscriptionTopic").values
