//! Checks across the adapter's files.

use sandbox::cost::{Costing, MAX_QUERY_COST};
use serde_json::{Value, json};

use super::bulk::{BULK_RUN, BULK_STATUS};
use super::fulfilment::{
    EVENT, FULFIL, FULFILMENT, FULFILMENT_COST, FULFILMENT_LINES, FULFILMENT_LINES_COST,
    FULFILMENTS_MADE, FULFILMENTS_MADE_COST, SHOP_ID, SHOP_ID_COST,
};
use super::inventory::{
    ITEMS, ITEMS_COST, LEVELS, LEVELS_COST, LEVELS_PER_ITEM, SET, SKUS_PER_SEARCH,
};
use super::orders::ORDERS;
use super::prices::UPDATE_PRICES;

/// Every query and mutation sent, with the variables that size it: the requested cost
/// under Shopify's documented rules is the one stated beside it, and within the limit.
#[test]
fn every_query_fits_the_single_query_limit_at_its_stated_cost() {
    let table: &[(&str, &str, Value, f64)] = &[
        (
            "ITEMS",
            ITEMS,
            json!({"first": SKUS_PER_SEARCH, "levels": LEVELS_PER_ITEM}),
            ITEMS_COST,
        ),
        ("LEVELS", LEVELS, json!({}), LEVELS_COST),
        ("ORDERS", ORDERS, json!({"first": 100}), 102.0),
        ("FULFILMENT", FULFILMENT, json!({}), FULFILMENT_COST),
        (
            "FULFILMENT_LINES",
            FULFILMENT_LINES,
            json!({}),
            FULFILMENT_LINES_COST,
        ),
        (
            "FULFILMENTS_MADE",
            FULFILMENTS_MADE,
            json!({}),
            FULFILMENTS_MADE_COST,
        ),
        ("BULK_STATUS", BULK_STATUS, json!({}), 1.0),
        ("SHOP_ID", SHOP_ID, json!({}), SHOP_ID_COST),
        ("BULK_RUN", BULK_RUN, json!({}), 10.0),
        ("SET", SET, json!({}), 10.0),
        ("UPDATE_PRICES", UPDATE_PRICES, json!({}), 10.0),
        ("FULFIL", FULFIL, json!({}), 10.0),
        ("EVENT", EVENT, json!({}), 10.0),
    ];
    for (name, query, variables, stated) in table {
        let requested = Costing::parse(query, None, &async_graphql_variables(variables.clone()))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .requested();
        assert_eq!(requested as f64, *stated, "{name}");
        assert!(requested <= MAX_QUERY_COST, "{name} costs {requested}");
    }
}

fn async_graphql_variables(value: Value) -> sandbox::cost::Variables {
    sandbox::cost::Variables::from_json(value)
}
