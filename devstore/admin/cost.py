"""Calculated query cost, by Shopify's published rules.

Source: https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits ("Cost calculation"):
a scalar or enum costs 0, an object 1, an interface or union the maximum of its possible
selections, a connection is sized by its ``first``/``last`` argument, a mutation costs 10. devstore's
reading of the parts the page leaves open, checked against Shopify's own published figures:

- a connection costs ``2 + size × (cost of one item)``, where one item is what ``edges { node }`` or
  ``nodes`` selects (the larger, not both: they are the same objects) and ``pageInfo`` is in the 2.
  ``products(first: 1) { edges { node { title } } }`` costs 3, as in Shopify's sample; ``first: 10``
  costs 12 and ``first: 250`` costs 252, as in responses Shopify serves;
- a mutation costs 10 for the whole payload it returns, plus any connection selected inside it
  (a connection is what a large selection costs; the objects a mutation returns are its result);
- a plain list of objects (``DiscountCustomers.customers``) costs as one object.

``requestedQueryCost`` uses the requested sizes; ``actualQueryCost`` walks the data that came back:
a connection counts the items it returned, a null object costs 1 (it was looked up), a union the
member it turned out to be. The actual cost is never above the requested one.

Where Shopify's own answers show a type priced otherwise, ``FLAT_COSTS`` says so: such an object
costs that much whatever is selected inside it, and the total is rounded up to whole points. A bulk
creation's code (``DiscountRedeemCodeBulkCreationCode``, with its ``errors`` and
``discountRedeemCode``) costs 1.2: live captures of ``discountRedeemCodeBulkAdd`` and
``discountRedeemCodeBulkCreation`` (API 2026-04, published with the public shopify-draft-proxy
project) report 24 and 15 requested for ``codes(first: 10)``, and 21, 16, 12 and 7 actual for 7 and
3 codes, which is 2 + 1.2 per code, rounded up, on top of 10 for the mutation or 1 for the creation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from graphql import FieldNode, GraphQLNamedType, GraphQLObjectType, SelectionSetNode, get_named_type, is_leaf_type

from devstore.admin.walk import Walker, is_connection, subselections

MUTATION_COST = 10
CONNECTION_COST = 2
MAX_QUERY_COST = 1000
REQUESTED: Any = object()  # walk the document, not data
MISSING: Any = object()  # a field the data does not have (another union member's fragment)
# Object types Shopify prices at a fixed cost, everything selected inside them included (see above).
FLAT_COSTS: dict[str, Fraction] = {"DiscountRedeemCodeBulkCreationCode": Fraction(6, 5)}

Points = int | Fraction


class CostCalculator(Walker):
    """The requested and actual cost of one operation."""

    def requested(self) -> int:
        return math.ceil(self._operation(REQUESTED))

    def actual(self, data: Mapping[str, Any] | None) -> int:
        return math.ceil(self._operation({} if data is None else data))

    def _operation(self, data: Any) -> Points:
        root = self.root_type()
        mutation = root is self.schema.mutation_type
        total: Points = 0
        for key, nodes in self.collect(root, [self.operation.selection_set]).items():
            if nodes[0].name.value.startswith("__"):
                continue
            value = REQUESTED if data is REQUESTED else data.get(key, MISSING)
            if mutation:
                total += MUTATION_COST + (0 if value is MISSING else self._field(root, nodes, value, free=True))
            elif value is not MISSING:
                total += self._field(root, nodes, value, free=False)
        return total

    def _field(self, parent: GraphQLObjectType, nodes: list[FieldNode], data: Any, *, free: bool) -> Points:
        """The cost of one field; ``free`` when objects are paid for already (inside a mutation payload)."""
        name = nodes[0].name.value
        if name.startswith("__"):
            return 0
        field = parent.fields[name]
        named = get_named_type(field.type)
        if is_leaf_type(named):
            return 0
        selections = subselections(nodes)
        if is_connection(field):
            return self._connection(named, selections, self.arguments(field, nodes[0]), data)  # type: ignore[arg-type]
        if named.name in FLAT_COSTS and not free:
            return FLAT_COSTS[named.name]
        own = 0 if free else 1
        if data is None:
            return own
        if isinstance(data, list):
            items = [item for item in data if item is not None]
            return own + max((self._children(named, selections, item, free) for item in items), default=0)
        return own + self._children(named, selections, data, free)

    def _children(self, named: GraphQLNamedType, selections: list[SelectionSetNode], data: Any,
                  free: bool) -> Points:
        """What an object's selections cost; for a union or interface, its costliest possible member."""
        return max((self._selection(runtime, selections, data, free) for runtime in self.possible_types(named)),
                   default=0)

    def _selection(self, runtime: GraphQLObjectType, selections: list[SelectionSetNode], data: Any,
                   free: bool) -> Points:
        total: Points = 0
        for key, nodes in self.collect(runtime, selections).items():
            value = REQUESTED if data is REQUESTED else data.get(key, MISSING)
            if value is not MISSING:
                total += self._field(runtime, nodes, value, free=free)
        return total

    def _connection(self, connection: GraphQLObjectType, selections: list[SelectionSetNode], args: dict[str, Any],
                    data: Any) -> Points:
        fields = self.collect(connection, selections)
        if data is REQUESTED:
            size = args["first"] if args.get("first") is not None else args.get("last") or 0
            return CONNECTION_COST + size * self._item(connection, fields, REQUESTED, 0)
        if data is None:
            return CONNECTION_COST
        returned = max((len(data.get(key) or []) for key, nodes in fields.items()
                        if nodes[0].name.value in ("edges", "nodes")), default=0)
        return CONNECTION_COST + sum(self._item(connection, fields, data, index) for index in range(returned))

    def _item(self, connection: GraphQLObjectType, fields: dict[str, list[FieldNode]], data: Any,
              index: int) -> Points:
        """The cost of the connection's ``index``-th item, through ``nodes`` or ``edges { node }``."""
        best: Points = 0
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name not in ("edges", "nodes"):
                continue
            item_type: GraphQLObjectType = get_named_type(connection.fields[name].type)  # type: ignore[assignment]
            if data is REQUESTED:
                item = REQUESTED
            else:
                items = data.get(key) or []
                if index >= len(items) or items[index] is None:
                    continue
                item = items[index]
            if name == "nodes" and item_type.name in FLAT_COSTS:
                best = max(best, FLAT_COSTS[item_type.name])
            elif name == "nodes":
                best = max(best, 1 + self._children(item_type, subselections(nodes), item, False))
            else:  # an edge: its cursor is free, its node an object
                best = max(best, self._selection(item_type, subselections(nodes), item, False))
        return best
