//! The preflight before go-live: what would make orders fail or stock lie once a channel is
//! live. Duplicate SKUs (in the ERP, in each channel), channel SKUs the ERP does not know
//! (after aliases and bundles), delivery methods and taxes seen in recent orders with no
//! mapping, and customers duplicated in the ERP under one e-mail. Pure: the tool gathers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::ChannelConfig;
use crate::mapping::erp_skus;
use crate::model::ids::Sku;
use crate::model::order::ChannelOrder;
use crate::ports::ErpContact;

/// Whether the ERP books the channel's currency to its ISO 4217 minor unit: Tryton makes
/// every currency 0.01 unless told otherwise, so a yen or dinar shop's amounts would be
/// rounded again in the ERP (¥1,000 in thirds; 0.375 KWD as 0.38).
pub fn currency_mismatch(
    channel: &ChannelConfig,
    erp: &HashMap<String, Decimal>,
) -> Option<String> {
    let code = channel.currency.as_str();
    let minor = Decimal::new(1, channel.currency.minor_units());
    match erp.get(code) {
        None => Some(format!("currency {code}: the ERP has no such currency")),
        Some(rounding) if *rounding != minor => Some(format!(
            "currency {code}: the ERP rounds it to {}, but its minor unit is {minor}: set the currency's rounding in Tryton",
            rounding.normalize()
        )),
        Some(_) => None,
    }
}

/// The channel's tax entries whose ERP tax is missing or charges another rate than the shop
/// tax it is mapped from: each would book a different tax than the customer paid.
pub fn tax_rate_mismatches(
    channel: &ChannelConfig,
    erp: &HashMap<String, Option<Decimal>>,
) -> Vec<String> {
    channel
        .tax_codes
        .iter()
        .filter_map(|code| {
            let entry = format!(
                "{:?} ({}, {}%) -> {:?}",
                code.shop_tax,
                code.country
                    .as_ref()
                    .map_or("any destination", |c| c.as_str()),
                code.rate_percent.normalize(),
                code.erp_tax
            );
            match erp.get(&code.erp_tax) {
                None => Some(format!("{entry}: the ERP has no tax of that name")),
                Some(None) => Some(format!("{entry}: the ERP tax is not a percentage")),
                Some(Some(rate))
                    if (*rate * Decimal::ONE_HUNDRED - code.rate_percent).abs()
                        > crate::config::RATE_TOLERANCE_PERCENT =>
                {
                    Some(format!(
                        "{entry}: the ERP tax charges {}%",
                        (*rate * Decimal::ONE_HUNDRED).normalize()
                    ))
                }
                Some(Some(_)) => None,
            }
        })
        .collect()
}

/// A SKU held more than once, and how it is spelled each time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// Trimmed, upper case: SKUs that differ only by case or spaces are one to people,
    /// and to any system that compares them loosely.
    pub value: String,
    pub count: usize,
    pub spellings: Vec<String>,
}

pub fn duplicates<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Duplicate> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for value in values {
        seen.entry(value.trim().to_uppercase())
            .or_default()
            .push(value.to_owned());
    }
    seen.into_iter()
        .filter(|(_, spellings)| spellings.len() > 1)
        .map(|(value, mut spellings)| {
            let count = spellings.len();
            spellings.sort();
            spellings.dedup();
            Duplicate {
                value,
                count,
                spellings,
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateCustomers {
    /// The e-mail, normalised (trimmed, lower case).
    pub email: String,
    pub parties: Vec<ErpContact>,
}

/// Parties that share an e-mail once it is normalised: order-sync would match either.
pub fn duplicate_customers(contacts: &[ErpContact]) -> Vec<DuplicateCustomers> {
    let mut by_email: BTreeMap<String, Vec<&ErpContact>> = BTreeMap::new();
    for contact in contacts {
        by_email
            .entry(contact.email.trim().to_lowercase())
            .or_default()
            .push(contact);
    }
    by_email
        .into_iter()
        .filter_map(|(email, contacts)| {
            let parties: BTreeSet<i64> = contacts.iter().map(|c| c.party_id).collect();
            (parties.len() > 1).then(|| DuplicateCustomers {
                email,
                parties: contacts.into_iter().cloned().collect(),
            })
        })
        .collect()
}

/// Channel SKUs that would fail as unknown: neither an ERP product, nor an alias of one,
/// nor a bundle of them.
pub fn unknown_skus(
    channel: &ChannelConfig,
    channel_skus: &[Sku],
    erp_codes: &[String],
) -> Vec<Sku> {
    let known: BTreeSet<&str> = erp_codes.iter().map(String::as_str).collect();
    let mut unknown: Vec<Sku> = channel_skus
        .iter()
        .filter(|sku| {
            erp_skus(channel, sku)
                .iter()
                .any(|erp| !known.contains(erp.as_str()))
        })
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    unknown.sort();
    unknown
}

/// What recent orders carry that the channel's mapping does not: delivery method -> the
/// orders, and `tax (destination)` -> the orders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unmapped {
    pub delivery_methods: BTreeMap<String, Vec<String>>,
    pub taxes: BTreeMap<String, Vec<String>>,
}

pub fn unmapped(channel: &ChannelConfig, orders: &[ChannelOrder]) -> Unmapped {
    let mut found = Unmapped::default();
    for order in orders {
        let destination = order
            .shipping_address
            .as_ref()
            .or(order.billing_address.as_ref())
            .map(|a| &a.country);
        if !channel.delivery_methods.is_empty() {
            for shipping in &order.shipping_lines {
                if channel
                    .carrier_for(shipping.code.as_deref(), &shipping.title)
                    .is_none()
                {
                    found
                        .delivery_methods
                        .entry(shipping.title.clone())
                        .or_default()
                        .push(order.name.clone());
                }
            }
        }
        if !channel.tax_codes.is_empty() {
            let taxes = order
                .lines
                .iter()
                .flat_map(|l| &l.taxes)
                .chain(order.shipping_lines.iter().flat_map(|s| &s.taxes));
            let mut seen: HashMap<String, ()> = HashMap::new();
            for tax in taxes {
                if channel
                    .erp_tax_for(&tax.title, tax.rate, destination)
                    .is_err()
                {
                    let key = format!(
                        "{}{} ({})",
                        tax.title,
                        tax.rate
                            .map(|r| format!(
                                " at {}%",
                                (r * rust_decimal::Decimal::ONE_HUNDRED).normalize()
                            ))
                            .unwrap_or_default(),
                        destination.map_or("unknown destination", |c| c.as_str())
                    );
                    if seen.insert(key.clone(), ()).is_none() {
                        found.taxes.entry(key).or_default().push(order.name.clone());
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> Config {
        Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_currency_the_erp_rounds_otherwise_than_iso_4217_is_found() {
        let mut channel = config().channels[0].clone();
        let dec = |d: &str| d.parse::<Decimal>().unwrap_or_else(|e| panic!("{e}"));
        let erp = HashMap::from([
            ("GBP".to_owned(), dec("0.01")),
            ("KWD".to_owned(), dec("0.01")),
        ]);
        assert_eq!(currency_mismatch(&channel, &erp), None);
        channel.currency =
            crate::model::ids::CurrencyCode::parse("KWD").unwrap_or_else(|e| panic!("{e}"));
        let found = currency_mismatch(&channel, &erp).unwrap_or_default();
        assert!(found.contains("0.01") && found.contains("0.001"), "{found}");
        channel.currency =
            crate::model::ids::CurrencyCode::parse("JPY").unwrap_or_else(|e| panic!("{e}"));
        assert!(currency_mismatch(&channel, &erp).is_some_and(|f| f.contains("no such")));
    }

    #[test]
    fn tax_entries_are_checked_against_the_erp_tax_s_rate() {
        let config = config();
        let uk = &config.channels[0];
        let dec = |d: &str| d.parse::<Decimal>().unwrap_or_else(|e| panic!("{e}"));
        let mut erp: HashMap<String, Option<Decimal>> = HashMap::from([
            ("UK VAT 20%".to_owned(), Some(dec("0.2"))),
            ("US Sales Tax 6%".to_owned(), Some(dec("0.06"))),
        ]);
        assert!(tax_rate_mismatches(uk, &erp).is_empty());
        erp.insert("UK VAT 20%".to_owned(), Some(dec("0.175")));
        erp.remove("US Sales Tax 6%");
        assert_eq!(
            tax_rate_mismatches(uk, &erp),
            [
                r#""GB VAT" (GB, 20%) -> "UK VAT 20%": the ERP tax charges 17.5%"#,
                r#""State Tax" (US, 6%) -> "US Sales Tax 6%": the ERP has no tax of that name"#,
            ]
        );
    }

    fn contact(id: i64, email: &str) -> ErpContact {
        ErpContact {
            party_id: id,
            party_name: format!("party {id}"),
            email: email.to_owned(),
        }
    }

    #[test]
    fn duplicates_are_counted_and_customers_grouped_by_normalised_email() {
        assert_eq!(
            duplicates(["A", "B", "A", "C", "a "]),
            [Duplicate {
                value: "A".to_owned(),
                count: 3,
                spellings: vec!["A".to_owned(), "a ".to_owned()],
            }]
        );
        let groups = duplicate_customers(&[
            contact(1, "Jo@Example.com "),
            contact(2, "jo@example.com"),
            contact(3, "amy@example.com"),
            contact(3, "AMY@example.com"),
        ]);
        assert_eq!(
            groups.len(),
            1,
            "one party with two spellings is not a duplicate"
        );
        assert_eq!(groups[0].email, "jo@example.com");
        assert_eq!(groups[0].parties.len(), 2);
    }

    #[test]
    fn aliases_and_bundles_are_known_when_their_erp_products_are() {
        let config = config();
        let channel = &config.channels[0];
        let sku = |s: &str| Sku::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let erp: Vec<String> = ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"]
            .map(str::to_owned)
            .to_vec();
        let unknown = unknown_skus(
            channel,
            &[
                sku("IPOD-BLACK-LEGACY"),
                sku("IPOD-TRIO"),
                sku("GHOST-SKU"),
                sku("IPOD2008RED"),
            ],
            &erp,
        );
        // The trio needs wool socks, which this ERP lacks.
        assert_eq!(unknown, [sku("GHOST-SKU"), sku("IPOD-TRIO")]);
    }
}
