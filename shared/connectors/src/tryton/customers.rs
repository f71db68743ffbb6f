//! Customers: parties, found by their e-mail contact mechanism, created with their
//! addresses, given another address or renamed. `SalesErp`'s customer methods (in `sales`)
//! are these.

use erpsync_core::SyncError;
use erpsync_core::mapping::CustomerDraft;
use erpsync_core::model::ids::{CountryCode, Email};
use erpsync_core::model::order::Address;
use erpsync_core::ports::{ErpAddress, ErpCustomer};
use reqwest::Method;
use serde_json::{Value, json};

use super::TrytonClient;
use super::values::{id_of, text_of};

/// Tryton's `ilike` treats `%` and `_` as wildcards; an e-mail must match literally.
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl TrytonClient {
    /// The customers (id, name) with this e-mail, compared case-insensitively, oldest first:
    /// one search, the party's name read through the contact mechanism.
    pub(super) async fn parties_with_email(
        &self,
        email: &Email,
    ) -> Result<Vec<(i64, Option<String>)>, SyncError> {
        let rows = self
            .search(
                "party.contact_mechanism",
                json!([
                    ["type", "=", "email"],
                    ["value", "ilike", like_literal(email.as_str())]
                ]),
                &["party.name"],
                Some(json!([["party", "ASC"]])),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| Some((id_of(row, "party")?, text_of(&row["party"], "name"))))
            .collect())
    }

    async fn country_id(&self, code: &CountryCode, field: &str) -> Result<i64, SyncError> {
        self.cached_id("country.country", "code", code.as_str()).await?.ok_or_else(|| {
            SyncError::permanent(
                "unknown_country",
                format!("{field}: country {code} is not set up in the ERP; add it to Tryton's countries, then redrive"),
            )
        })
    }

    async fn address_values(&self, address: &Address, field: &str) -> Result<Value, SyncError> {
        Ok(json!({
            // The person to deliver to; for a business customer the party is the company.
            "party_name": address.name,
            "street_unstructured": address.street,
            "postal_code": address.postal_code,
            "city": address.city,
            "country": self.country_id(&address.country, field).await?,
        }))
    }

    async fn addresses_of(&self, party: i64) -> Result<Vec<ErpAddress>, SyncError> {
        let rows = self
            .search(
                "party.address",
                json!([["party", "=", party]]),
                &["street", "postal_code", "city", "country.code"],
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(ErpAddress {
                    id: id_of(row, "id")?,
                    street: text_of(row, "street"),
                    postal_code: text_of(row, "postal_code"),
                    city: text_of(row, "city"),
                    country: row
                        .get("country")
                        .and_then(|c| text_of(c, "code"))
                        .and_then(|c| CountryCode::parse(&c).ok()),
                })
            })
            .collect())
    }

    /// `SalesErp::find_customer_by_email`: the oldest party with this e-mail, with its
    /// addresses.
    pub(super) async fn customer_with_email(
        &self,
        email: &Email,
    ) -> Result<Option<ErpCustomer>, SyncError> {
        let Some((party, name)) = self.parties_with_email(email).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(ErpCustomer {
            id: party,
            name,
            addresses: self.addresses_of(party).await?,
        }))
    }

    /// `SalesErp::create_customer`: a party with its contact mechanisms and addresses.
    pub(super) async fn create_party(
        &self,
        customer: &CustomerDraft,
    ) -> Result<ErpCustomer, SyncError> {
        let mut addresses = vec![
            self.address_values(&customer.invoice_address, "billing_address")
                .await?,
        ];
        if customer.shipment_address != customer.invoice_address {
            addresses.push(
                self.address_values(&customer.shipment_address, "shipping_address")
                    .await?,
            );
        }
        let mut mechanisms = Vec::new();
        if let Some(email) = &customer.email {
            mechanisms.push(json!({"type": "email", "value": email.as_str()}));
        }
        if let Some(phone) = &customer.phone {
            mechanisms.push(json!({"type": "phone", "value": phone}));
        }
        let body = json!({
            "name": customer.name,
            "contact_mechanisms": [["create", mechanisms]],
            "addresses": [["create", addresses]],
        });
        let id = self.create("party.party", &body).await?;
        Ok(ErpCustomer {
            id,
            name: Some(customer.name.clone()),
            addresses: self.addresses_of(id).await?,
        })
    }

    /// `SalesErp::add_address`: another address of a party.
    pub(super) async fn add_party_address(
        &self,
        customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError> {
        let mut body = self.address_values(address, "shipping_address").await?;
        body["party"] = json!(customer_id);
        let id = self.create("party.address", &body).await?;
        Ok(ErpAddress {
            id,
            street: Some(address.street.clone()),
            postal_code: address.postal_code.clone(),
            city: address.city.clone(),
            country: Some(address.country.clone()),
        })
    }

    /// `SalesErp::rename_customer`.
    pub(super) async fn rename_party(&self, customer_id: i64, name: &str) -> Result<(), SyncError> {
        let refs = self.references().await?;
        self.call(
            Method::PUT,
            &format!("model/party.party/{customer_id}"),
            &[],
            Some(&json!({"name": name})),
            Some(&refs.context),
        )
        .await
        .map(|_| ())
    }
}
