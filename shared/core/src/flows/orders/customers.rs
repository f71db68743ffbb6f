//! The sale's customer: found by normalised e-mail or created, with the addresses the sale
//! needs; the shop's changes to a customer the ERP owns are refused and recorded.

use crate::config::Owner;
use crate::error::SyncError;
use crate::mapping::CustomerDraft;
use crate::model::order::Address;
use crate::ports::{ErpAddress, ErpCustomer, SalesErp};

pub(super) struct ResolvedCustomer {
    pub(super) id: i64,
    pub(super) invoice_address_id: i64,
    pub(super) shipment_address_id: i64,
    /// A change the shop wanted that ownership refused, for the record.
    pub(super) refused: Option<String>,
}

/// Finds the customer by normalised e-mail (or creates it) and the addresses the sale needs.
pub(super) async fn ensure_customer(
    erp: &dyn SalesErp,
    draft: &CustomerDraft,
    owner: Owner,
) -> Result<ResolvedCustomer, SyncError> {
    let existing = match &draft.email {
        Some(email) => erp.find_customer_by_email(email).await?,
        None => None,
    };
    let customer = match existing {
        Some(customer) => customer,
        None => {
            let created = erp.create_customer(draft).await?;
            return match created.addresses.as_slice() {
                [invoice] => Ok(ResolvedCustomer {
                    id: created.id,
                    invoice_address_id: invoice.id,
                    shipment_address_id: invoice.id,
                    refused: None,
                }),
                [invoice, shipment, ..] => Ok(ResolvedCustomer {
                    id: created.id,
                    invoice_address_id: invoice.id,
                    shipment_address_id: shipment.id,
                    refused: None,
                }),
                [] => Err(SyncError::permanent(
                    "erp_customer",
                    format!("the ERP created customer {} without an address", created.id),
                )),
            };
        }
    };
    // The shop's name for an existing customer is master data: applied only when the
    // channel owns customers. New delivery addresses are order data and always added.
    let mut refused = None;
    if let Some(erp_name) = &customer.name
        && normalised(erp_name) != normalised(&draft.name)
    {
        match owner {
            Owner::Channel => erp.rename_customer(customer.id, &draft.name).await?,
            Owner::Erp => {
                refused = Some(format!(
                    "ownership: the shop names customer {} {:?}, the ERP {:?}; customers are owned by the ERP, so it was not changed",
                    customer.id, draft.name, erp_name
                ));
            }
        }
    }
    // The invoice address is the customer's master data; the delivery address is the order's.
    let known_invoice_address = customer
        .addresses
        .iter()
        .find(|a| same_address(a, &draft.invoice_address));
    let invoice_address_id = match (known_invoice_address, owner, customer.addresses.first()) {
        (Some(found), _, _) => found.id,
        (None, Owner::Erp, Some(erp_address)) => {
            let note = format!(
                "ownership: the shop's billing address for customer {} ({}) is not one the ERP has; customers are owned by the ERP, so it was not added and the ERP's address was invoiced",
                customer.id,
                draft.invoice_address.street.replace('\n', ", ")
            );
            refused = Some(match refused {
                Some(previous) => format!("{previous}; {note}"),
                None => note,
            });
            erp_address.id
        }
        (None, _, _) => {
            erp.add_address(customer.id, &draft.invoice_address)
                .await?
                .id
        }
    };
    let shipment_address_id =
        if draft.shipment_address == draft.invoice_address && known_invoice_address.is_some() {
            invoice_address_id
        } else {
            address_for(erp, &customer, &draft.shipment_address).await?
        };
    Ok(ResolvedCustomer {
        id: customer.id,
        invoice_address_id,
        shipment_address_id,
        refused,
    })
}

fn normalised(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub(super) async fn address_for(
    erp: &dyn SalesErp,
    customer: &ErpCustomer,
    address: &Address,
) -> Result<i64, SyncError> {
    match customer.addresses.iter().find(|a| same_address(a, address)) {
        Some(found) => Ok(found.id),
        None => Ok(erp.add_address(customer.id, address).await?.id),
    }
}

/// Two addresses are the same place when street, postcode, city and country agree, ignoring
/// case, spacing and punctuation ("12 St. James's Sq" == "12 st james's sq").
pub fn same_address(erp: &ErpAddress, address: &Address) -> bool {
    fn norm(text: Option<&str>) -> String {
        text.unwrap_or_default()
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    }
    norm(erp.street.as_deref()) == norm(Some(&address.street))
        && norm(erp.postal_code.as_deref()) == norm(address.postal_code.as_deref())
        && norm(erp.city.as_deref()) == norm(address.city.as_deref())
        && erp.country.as_ref() == Some(&address.country)
}
