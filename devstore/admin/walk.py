"""Walking an operation's selections the way execution will: fragments, type conditions, @skip/@include."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    NamedTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
)
from graphql.execution.values import get_argument_values, get_directive_values


def is_connection(field: GraphQLField) -> bool:
    """A Relay connection: sized by ``first``/``last`` (every ``…Connection`` type in the schema is)."""
    return get_named_type(field.type).name.endswith("Connection") and "first" in field.args


class Walker:
    """One operation with its fragments and coerced variables (as graphql-core returned them)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode,
                 variables: Any) -> None:
        self.schema = schema
        self.operation = operation
        self.variables = variables
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def root_type(self) -> GraphQLObjectType:
        root = self.schema.mutation_type if self.operation.operation.value == "mutation" else self.schema.query_type
        assert root is not None
        return root

    def included(self, node: FieldNode | InlineFragmentNode | FragmentSpreadNode) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip.get("if"):
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return include is None or bool(include.get("if"))

    def applies(self, condition: NamedTypeNode | None, runtime: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        named = self.schema.get_type(condition.name.value)
        if named is runtime:
            return True
        return named is not None and is_abstract_type(named) and self.schema.is_sub_type(named, runtime)  # type: ignore[arg-type]

    def collect(self, runtime: GraphQLObjectType, selection_sets: Iterable[SelectionSetNode],
                into: dict[str, list[FieldNode]] | None = None) -> dict[str, list[FieldNode]]:
        """Fields selected on an object of type ``runtime``, grouped by response key, in document order."""
        fields: dict[str, list[FieldNode]] = {} if into is None else into
        for selection_set in selection_sets:
            for selection in selection_set.selections:
                if not self.included(selection):  # type: ignore[arg-type]
                    continue
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    if self.applies(selection.type_condition, runtime):
                        self.collect(runtime, [selection.selection_set], fields)
                elif isinstance(selection, FragmentSpreadNode):
                    fragment = self.fragments.get(selection.name.value)
                    if fragment is not None and self.applies(fragment.type_condition, runtime):
                        self.collect(runtime, [fragment.selection_set], fields)
        return fields

    def arguments(self, field: GraphQLField, node: FieldNode) -> dict[str, Any]:
        return get_argument_values(field, node, self.variables)

    def possible_types(self, named: GraphQLNamedType) -> list[GraphQLObjectType]:
        if is_abstract_type(named):
            return list(self.schema.get_possible_types(named))  # type: ignore[arg-type]
        return [named]  # type: ignore[list-item]


def subselections(nodes: list[FieldNode]) -> list[SelectionSetNode]:
    return [node.selection_set for node in nodes if node.selection_set is not None]
