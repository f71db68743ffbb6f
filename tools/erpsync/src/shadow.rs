//! `erpsync shadow report`: every order a shadow channel handled, next to the sale people
//! entered in the ERP by hand during dual running, with the differences field by field.

use erpsync_aws::dynamo::DynamoStore;
use erpsync_core::flows::shadow::{Difference, MatchedBy, best_match, compare};
use erpsync_core::mapping::SaleDraft;
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::state::SyncStatus;
use erpsync_core::ports::SalesReview;
use serde::Serialize;
use time::Duration;

/// How far from the shop's order date a hand-entered sale may be dated to count as it.
const DATE_WINDOW: Duration = Duration::days(3);

#[derive(Debug, Clone, Serialize)]
pub struct ShadowComparison {
    pub channel: String,
    pub order_id: String,
    pub reference: String,
    pub erp_sale: Option<MatchedSale>,
    pub differences: Vec<Difference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatchedSale {
    pub id: i64,
    pub number: Option<String>,
    pub matched_by: MatchedBy,
}

pub async fn report(
    store: &DynamoStore,
    review: &dyn SalesReview,
    channel: Option<&ChannelId>,
) -> anyhow::Result<Vec<ShadowComparison>> {
    let mut comparisons = Vec::new();
    let mut states = store.states_with_status(SyncStatus::Shadow).await?;
    states.sort_by(|a, b| {
        (a.entity.channel.as_str(), &a.entity.entity_id)
            .cmp(&(b.entity.channel.as_str(), &b.entity.entity_id))
    });
    for state in states {
        if channel.is_some_and(|c| c != &state.entity.channel) {
            continue;
        }
        let Some(draft) = state
            .note
            .as_deref()
            .and_then(|n| serde_json::from_str::<SaleDraft>(n).ok())
        else {
            continue;
        };
        let mut matched = review
            .sales_by_reference(&draft.reference)
            .await?
            .into_iter()
            .next()
            .map(|s| (s, MatchedBy::Reference));
        if matched.is_none()
            && let (Some(email), Some(version)) = (&draft.customer.email, state.version)
        {
            let day = version.date();
            let candidates = review
                .sales_of_customer(email, day - DATE_WINDOW, day + DATE_WINDOW)
                .await?;
            matched = best_match(&draft, &candidates)
                .cloned()
                .map(|s| (s, MatchedBy::CustomerDateAndLines));
        }
        let (erp_sale, differences) = match matched {
            Some((sale, matched_by)) => (
                Some(MatchedSale {
                    id: sale.id,
                    number: sale.number.clone(),
                    matched_by,
                }),
                compare(&draft, &sale),
            ),
            None => (
                None,
                vec![Difference {
                    field: "sale".to_owned(),
                    shadow: draft.reference.clone(),
                    erp: "(no matching sale by reference, or by customer, date and lines)"
                        .to_owned(),
                }],
            ),
        };
        comparisons.push(ShadowComparison {
            channel: state.entity.channel.to_string(),
            order_id: state.entity.entity_id.clone(),
            reference: draft.reference,
            erp_sale,
            differences,
        });
    }
    Ok(comparisons)
}

/// The report as people read it.
pub fn render(comparisons: &[ShadowComparison]) -> String {
    let mut out = String::new();
    for comparison in comparisons {
        let sale = comparison
            .erp_sale
            .as_ref()
            .map(|s| {
                format!(
                    "ERP sale {} ({:?})",
                    s.number.as_deref().unwrap_or("?"),
                    s.matched_by
                )
            })
            .unwrap_or_else(|| "no ERP sale".to_owned());
        let verdict = if comparison.differences.is_empty() {
            "same"
        } else {
            "DIFFERENT"
        };
        out.push_str(&format!(
            "{} {}  {sale}  {verdict}\n",
            comparison.channel, comparison.order_id
        ));
        for difference in &comparison.differences {
            out.push_str(&format!(
                "    {:<28} shadow {:<14} erp {}\n",
                difference.field, difference.shadow, difference.erp
            ));
        }
    }
    let different = comparisons
        .iter()
        .filter(|c| !c.differences.is_empty())
        .count();
    out.push_str(&format!(
        "{} shadow orders, {} with differences\n",
        comparisons.len(),
        different
    ));
    out
}
