//! Shopify's calculated query cost, as "GraphQL Admin API rate limits" documents it
//! (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits): scalar and enum
//! fields cost 0, an object 1, a connection 2 plus `first` (or `last`) times the cost of one
//! of its nodes, so nested connections multiply; a mutation costs 10. A query whose
//! requested cost is over 1,000 is refused before it runs (MAX_COST_EXCEEDED). The actual
//! cost is the same sum over what the answer holds: the nodes actually returned.
//!
//! The sandbox has no schema at this point, so types are read from the document: a field
//! with a selection is an object, one without is a scalar or an enum; a field taking
//! `first`/`last` whose selection has `nodes` or `edges` is a connection (its `pageInfo`,
//! `edges` and `cursor` are part of the connection's 2 points), one without them is a
//! bounded list of objects (`first` of them). Fragments on a type condition are selections
//! of an interface or union: the most expensive one counts.

use std::collections::HashMap;

pub use async_graphql::Variables;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, FragmentDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Positioned, Value as GqlValue};
use serde_json::Value;

/// The most a single query may request; above it Shopify refuses it whatever the bucket.
pub const MAX_QUERY_COST: u64 = 1000;

/// What one mutation costs.
pub const MUTATION_COST: u64 = 10;

/// A parsed request, ready to be costed before and after it runs.
pub struct Costing {
    document: ExecutableDocument,
    operation: Option<String>,
    variables: Variables,
}

impl Costing {
    pub fn parse(
        query: &str,
        operation: Option<&str>,
        variables: &Variables,
    ) -> Result<Self, String> {
        let document = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
        let costing = Self {
            document,
            operation: operation.map(str::to_owned),
            variables: variables.clone(),
        };
        costing.operation()?;
        Ok(costing)
    }

    fn operation(&self) -> Result<(OperationType, &SelectionSet), String> {
        let operation = match (&self.document.operations, &self.operation) {
            (DocumentOperations::Single(operation), _) => operation,
            (DocumentOperations::Multiple(operations), Some(name)) => operations
                .get(&Name::new(name))
                .ok_or_else(|| format!("no operation named {name}"))?,
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
                .values()
                .next()
                .ok_or_else(|| "no operation".to_owned())?,
            (DocumentOperations::Multiple(_), None) => {
                return Err("operationName is required".to_owned());
            }
        };
        Ok((operation.node.ty, &operation.node.selection_set.node))
    }

    pub fn is_mutation(&self) -> bool {
        matches!(self.operation(), Ok((OperationType::Mutation, _)))
    }

    /// The cost asked for: every connection as full as its `first` allows.
    pub fn requested(&self) -> u64 {
        self.cost(None)
    }

    /// The cost of what was returned (`data` of the answer); a mutation costs what it asked.
    pub fn actual(&self, data: &Value) -> u64 {
        if self.is_mutation() {
            return self.requested();
        }
        self.cost(Some(data))
    }

    fn cost(&self, data: Option<&Value>) -> u64 {
        let Ok((ty, selection)) = self.operation() else {
            return 0;
        };
        let walk = Walk {
            fragments: &self.document.fragments,
            variables: &self.variables,
        };
        match ty {
            OperationType::Mutation => {
                MUTATION_COST
                    * selection
                        .items
                        .iter()
                        .filter(|item| matches!(item.node, Selection::Field(_)))
                        .count() as u64
            }
            _ => walk.set(selection, data),
        }
    }
}

struct Walk<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
}

impl Walk<'_> {
    /// The fields of one object (the object itself is counted by its parent).
    fn set(&self, set: &SelectionSet, data: Option<&Value>) -> u64 {
        let mut plain = 0;
        let mut typed = 0;
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let key = field
                        .node
                        .alias
                        .as_ref()
                        .unwrap_or(&field.node.name)
                        .node
                        .as_str();
                    plain += self.field(&field.node, data.map(|d| &d[key]));
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) {
                        typed = typed.max(self.set(&fragment.node.selection_set.node, data));
                    }
                }
                Selection::InlineFragment(inline) => {
                    let cost = self.set(&inline.node.selection_set.node, data);
                    if inline.node.type_condition.is_some() {
                        typed = typed.max(cost);
                    } else {
                        plain += cost;
                    }
                }
            }
        }
        plain + typed
    }

    fn size(&self, field: &Field) -> Option<u64> {
        ["first", "last"].iter().find_map(|name| {
            let value = field.get_argument(name)?.node.clone();
            match value.into_const_with(|v| self.variables.get(&v).cloned().ok_or(())) {
                Ok(GqlValue::Number(n)) => n.as_u64(),
                _ => None,
            }
        })
    }

    fn field(&self, field: &Field, data: Option<&Value>) -> u64 {
        let selection = &field.selection_set.node;
        if selection.items.is_empty() {
            return 0;
        }
        let node = node_selection(selection);
        match (node, self.size(field)) {
            (Some(node), size) => {
                let per_node = |value: Option<&Value>| 1 + self.set(node, value);
                2 + match data {
                    Some(data) => returned_nodes(data).iter().map(|n| per_node(Some(n))).sum(),
                    None => size.unwrap_or(0) * per_node(None),
                }
            }
            (None, Some(size)) => {
                let per_item = |value: Option<&Value>| 1 + self.set(selection, value);
                match data {
                    Some(Value::Array(items)) => items.iter().map(|i| per_item(Some(i))).sum(),
                    Some(_) => 0,
                    None => size * per_item(None),
                }
            }
            // An object, or a list with no size argument costed as one of its objects.
            (None, None) => {
                let one = match data {
                    Some(Value::Array(items)) => items.first(),
                    other => other,
                };
                1 + self.set(selection, one)
            }
        }
    }
}

/// The selection of one node of a connection: under `nodes`, or `edges { node }`.
pub(crate) fn node_selection(selection: &SelectionSet) -> Option<&SelectionSet> {
    selection.items.iter().find_map(|item| match &item.node {
        Selection::Field(field) if field.node.name.node == "nodes" => {
            Some(&field.node.selection_set.node)
        }
        Selection::Field(field) if field.node.name.node == "edges" => field
            .node
            .selection_set
            .node
            .items
            .iter()
            .find_map(|edge| match &edge.node {
                Selection::Field(node) if node.node.name.node == "node" => {
                    Some(&node.node.selection_set.node)
                }
                _ => None,
            }),
        _ => None,
    })
}

/// The nodes an answered connection holds.
fn returned_nodes(data: &Value) -> Vec<Value> {
    if let Some(nodes) = data["nodes"].as_array() {
        return nodes.clone();
    }
    data["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|e| e["node"].clone()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn requested(query: &str, variables: Value) -> u64 {
        Costing::parse(query, None, &Variables::from_json(variables))
            .unwrap_or_else(|e| panic!("{e}"))
            .requested()
    }

    /// Each worked out by hand from the documented rules.
    #[test]
    fn requested_costs_follow_the_documented_rules() {
        let table: &[(&str, &str, Value, u64)] = &[
            (
                "the documentation's worked example, edges form: 2 + 10 x (1 + 2 + 5 x 1)",
                "{ products(first: 10) { edges { node { title variants(first: 5) { edges { node { price } } } } } } }",
                json!({}),
                82,
            ),
            (
                "the same with nodes",
                "{ products(first: 10) { nodes { title variants(first: 5) { nodes { price } } } } }",
                json!({}),
                82,
            ),
            (
                "an object and its scalars: 1",
                "{ shop { id name timezoneOffsetMinutes customerAccounts } }",
                json!({}),
                1,
            ),
            (
                "first from a variable, pageInfo inside the connection: 2 + 50 x 1",
                "query($n: Int!) { products(first: $n) { nodes { id } pageInfo { hasNextPage endCursor } } }",
                json!({"n": 50}),
                52,
            ),
            (
                "the old price read: 2 + 50 x (1 + 2 + 100 x 1)",
                "{ products(first: 50) { nodes { id variants(first: 100) { nodes { id sku price } } } } }",
                json!({}),
                5152,
            ),
            (
                "the old stock read: 2 + 100 x (1 + 2 + 50 x (1 + 1 + 1))",
                "{ inventoryItems(first: 100) { nodes { id sku inventoryLevels(first: 50) { nodes { location { id } quantities(names: [\"available\"]) { name quantity } } } } } }",
                json!({}),
                15302,
            ),
            (
                "a fragment counts as its fields: 2 + 10 x (1 + 1)",
                "query { products(first: 10) { nodes { ...P } } } fragment P on Product { id featuredImage { url } }",
                json!({}),
                22,
            ),
            (
                "a bounded list of objects: 1 + 20 x (1 + 3 x 1)",
                "{ order(id: \"x\") { fulfillments(first: 20) { trackingInfo(first: 3) { number } } } }",
                json!({}),
                81,
            ),
            (
                "two mutations: 10 each, whatever they select",
                "mutation { a: fulfillmentCreate(fulfillment: {}) { fulfillment { id } } b: fulfillmentCreate(fulfillment: {}) { userErrors { message } } }",
                json!({}),
                20,
            ),
        ];
        for (why, query, variables, cost) in table {
            assert_eq!(requested(query, variables.clone()), *cost, "{why}");
        }
    }

    #[test]
    fn the_actual_cost_counts_the_nodes_returned() {
        let costing = Costing::parse(
            "{ products(first: 10) { nodes { title variants(first: 5) { nodes { price } } } } }",
            None,
            &Variables::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let data = json!({"products": {"nodes": [
            {"title": "a", "variants": {"nodes": [{"price": "1"}, {"price": "2"}]}},
            {"title": "b", "variants": {"nodes": []}},
        ]}});
        // 2 + (1 + 2 + 2 x 1) + (1 + 2 + 0)
        assert_eq!(costing.actual(&data), 10);
        assert_eq!(costing.requested(), 82);
    }
}
