use super::*;

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/erpsync.example.toml"
));

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml(text).map_err(|e| e.to_string())
}

#[test]
fn a_tax_is_mapped_by_its_rate_and_without_one_only_when_the_title_names_one_rate() {
    let config = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let mut uk = config.channels[0].clone();
    let us = CountryCode::parse("US").ok();
    let dec = |d: &str| d.parse::<rust_decimal::Decimal>().unwrap_or_default();
    assert_eq!(
        uk.erp_tax_for("state tax", Some(dec("0.06")), us.as_ref()),
        Ok("US Sales Tax 6%")
    );
    assert_eq!(
        uk.erp_tax_for("State Tax", None, us.as_ref()),
        Ok("US Sales Tax 6%")
    );
    assert_eq!(
        uk.erp_tax_for("State Tax", Some(dec("0.08875")), us.as_ref()),
        Err(TaxMiss::OtherRate(vec![dec("6")]))
    );
    uk.tax_codes.push(TaxCode {
        shop_tax: "State Tax".to_owned(),
        country: us.clone(),
        rate_percent: dec("8.875"),
        erp_tax: "NY Sales Tax 8.875%".to_owned(),
    });
    assert_eq!(
        uk.erp_tax_for("State Tax", Some(dec("0.08875")), us.as_ref()),
        Ok("NY Sales Tax 8.875%")
    );
    assert_eq!(
        uk.erp_tax_for("State Tax", None, us.as_ref()),
        Err(TaxMiss::RateUnknown(vec![dec("6"), dec("8.875")]))
    );
    assert_eq!(
        uk.erp_tax_for("GST", None, us.as_ref()),
        Err(TaxMiss::Unmapped)
    );
}

#[test]
fn a_tax_inclusive_price_channel_without_a_price_list_is_refused_naming_the_key() {
    let text = EXAMPLE.replacen("price_list = \"UK retail\"", "taxes_included = true", 1);
    let error = parse(&text).err().unwrap_or_default();
    assert!(error.contains("prices.price_list"), "{error}");
}

#[test]
fn shopify_s_admin_api_on_a_woocommerce_channel_is_refused_naming_the_key() {
    let text = EXAMPLE.replacen(
        "[channels.sku_aliases]\n\"Bar3\"",
        "[channels.admin_api]\nurl = \"https://shop.erpsync-demo.example\"\nversion = \"2026-07\"\naccess_token_secret = \"erpsync/woo-shop/admin-token\"\n\n[channels.sku_aliases]\n\"Bar3\"",
        1,
    );
    assert_ne!(text, EXAMPLE, "the example's WooCommerce channel moved");
    let error = parse(&text).err().unwrap_or_default();
    assert!(
        error.contains("channels[2].admin_api") && error.contains("WooCommerce"),
        "{error}"
    );
}

#[test]
fn a_tax_rate_outside_0_to_100_percent_is_refused_naming_the_key() {
    let text = EXAMPLE.replacen("rate_percent = 20", "rate_percent = 120", 1);
    let error = parse(&text).err().unwrap_or_default();
    assert!(error.contains("tax_codes[0].rate_percent"), "{error}");
}

#[test]
fn the_example_config_is_valid() {
    let config = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.channels.len() >= 2);
    let uk = config
        .channel_by_shop_domain("ERPSYNC-UK.myshopify.com")
        .map(|c| c.id.as_str());
    assert_eq!(uk, Some("uk-shop"));
}

#[test]
fn a_misspelt_key_is_named() {
    let text = EXAMPLE.replacen("currency = ", "curency = ", 1);
    let err = parse(&text).err().unwrap_or_default();
    assert!(err.contains("curency"), "{err}");
}

#[test]
fn a_bad_value_names_its_key() {
    let text = EXAMPLE.replacen("currency = \"GBP\"", "currency = \"pounds\"", 1);
    let err = parse(&text).err().unwrap_or_default();
    assert!(err.contains("currency"), "{err}");
    assert!(err.contains("ISO 4217"), "{err}");
}

#[test]
fn duplicate_shop_domains_are_refused() {
    let text = EXAMPLE.replace("erpsync-eu.myshopify.com", "erpsync-uk.myshopify.com");
    let err = parse(&text).err().unwrap_or_default();
    assert!(err.contains("shop_domain"), "{err}");
}

#[test]
fn chained_aliases_are_refused() {
    let text = EXAMPLE.replace(
        "\"IPOD-BLACK-LEGACY\" = \"IPOD2008BLACK\"",
        "\"IPOD-BLACK-LEGACY\" = \"IPOD2008BLACK\"\n\"IPOD2008BLACK\" = \"IPOD2009BLACK\"",
    );
    let err = parse(&text).err().unwrap_or_default();
    assert!(err.contains("itself an alias"), "{err}");
}
