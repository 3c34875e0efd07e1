"""Checks made before a valid document runs: what devstore cannot answer, and Shopify's page-size rules.

A field in Shopify's schema that devstore has no data for is refused up front — never answered with
made-up values, and never after a mutation half ran. Connections need ``first`` or ``last`` (at
most 250), as on Shopify.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, GraphQLError, GraphQLObjectType, get_named_type, is_leaf_type

from devstore.admin.objects import implemented, returnable
from devstore.admin.pagination import MAX_PAGE_SIZE
from devstore.admin.schema import root_implemented
from devstore.admin.walk import Walker, is_connection, subselections

MAX_INPUT_ARRAY = 250


def not_implemented(typename: str, field: str, node: FieldNode, path: list[str]) -> dict[str, Any]:
    return GraphQLError(
        f"devstore does not implement {typename}.{field}: the field is in Shopify's schema, but devstore "
        "has no data behind it. Ask for the fields devstore documents, or extend devstore.admin.",
        nodes=node, path=path,
        extensions={"code": "DEVSTORE_NOT_IMPLEMENTED", "typeName": typename, "fieldName": field},
    ).formatted


def page_size_problem(field: str, args: dict[str, Any], node: FieldNode, path: list[str]) -> dict[str, Any] | None:
    """Shopify's refusal of a connection without a page size, or with one above 250."""
    if args.get("first") is None and args.get("last") is None:
        return GraphQLError("you must provide one of first or last", nodes=node, path=path,
                            extensions={"code": "BAD_REQUEST"}).formatted
    for label in ("first", "last"):
        size = args.get(label)
        if size is not None and not 0 <= size <= MAX_PAGE_SIZE:
            return GraphQLError(f"Argument '{label}' on Field '{field}' has an invalid value ({size}). "
                                f"Expected a page size from 0 to {MAX_PAGE_SIZE}.", nodes=node, path=path,
                                extensions={"code": "argumentLiteralsIncompatible"}).formatted
    return None


def _lists(value: Any) -> Iterator[list[Any]]:
    """Every list inside an argument value (input objects nest them)."""
    if isinstance(value, list):
        yield value
        for item in value:
            yield from _lists(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _lists(item)


def input_size_problem(args: dict[str, Any], node: FieldNode, path: list[str]) -> dict[str, Any] | None:
    """Shopify's limit on every input array: 250 items. The error's path ends with the argument's name,
    as Shopify's does (``["discountRedeemCodeBulkAdd", "codes"]``)."""
    for name, value in args.items():
        for items in _lists(value):
            if len(items) > MAX_INPUT_ARRAY:
                return GraphQLError(f"The input array size of {len(items)} is greater than the maximum allowed of "
                                    f"{MAX_INPUT_ARRAY}.", nodes=node, path=[*path, name],
                                    extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"}).formatted
    return None


class Checker(Walker):
    """Collects the problems of one operation (empty when devstore can run it as asked).

    ``check_arguments=False`` skips the page-size rules, to check a document's fields without variables.
    """

    check_arguments = True

    def problems(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        root = self.root_type()
        for key, nodes in self.collect(root, [self.operation.selection_set]).items():
            name = nodes[0].name.value
            if not root_implemented(self.schema, root.name, name):
                found.append(not_implemented(root.name, name, nodes[0], [key]))
            else:
                self._field(root, nodes, [key], found)
        # A field selected on a union or interface is checked once per member: report it once.
        unique = {(p["message"], tuple(p.get("path") or ())): p for p in found}
        return list(unique.values())

    def _field(self, parent: GraphQLObjectType, nodes: list[FieldNode], path: list[str],
               found: list[dict[str, Any]]) -> None:
        name = nodes[0].name.value
        if name.startswith("__"):
            return
        field = parent.fields[name]
        named = get_named_type(field.type)
        if self.check_arguments:
            args = self.arguments(field, nodes[0])
            for problem in (page_size_problem(name, args, nodes[0], path) if is_connection(field) else None,
                            input_size_problem(args, nodes[0], path)):
                if problem is not None:
                    found.append(problem)
        if is_leaf_type(named):
            return
        for runtime in self.possible_types(named):
            if not returnable(runtime.name):
                continue  # devstore never returns one, so a fragment on it is never used
            for key, children in self.collect(runtime, subselections(nodes)).items():
                child = children[0].name.value
                if not implemented(runtime.name, child):
                    found.append(not_implemented(runtime.name, child, children[0], path + [key]))
                else:
                    self._field(runtime, children, path + [key], found)
