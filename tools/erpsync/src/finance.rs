//! `erpsync finance report`: per order, what the ERP invoiced and credited against the money
//! recorded, every variance named; totals per channel and currency; as text, JSON or CSV.

use erpsync_aws::dynamo::DynamoStore;
use erpsync_core::config::Config;
use erpsync_core::flows::finance::{FinanceReport, report_channel};
use erpsync_core::model::state::Flow;
use erpsync_core::ports::FinanceErp;

/// Reads each channel that records payments (or only `channel`) over `from..=to`; `progress`
/// hears which channel is being read.
pub async fn report(
    config: &Config,
    erp: &dyn FinanceErp,
    store: &DynamoStore,
    channel: Option<&str>,
    from: time::Date,
    to: time::Date,
    progress: &dyn Fn(&str),
) -> anyhow::Result<FinanceReport> {
    let attention = store.needing_attention(Flow::PaymentSync).await?;
    let mut report = FinanceReport::default();
    for wanted in config
        .channels
        .iter()
        .filter(|c| !c.payments.is_empty())
        .filter(|c| channel.is_none_or(|id| c.id.as_str() == id))
    {
        progress(wanted.id.as_str());
        let sales = erp.sales_with_money(wanted.id.as_str(), from, to).await?;
        let theirs: Vec<_> = attention
            .iter()
            .filter(|s| s.entity.channel == wanted.id)
            .cloned()
            .collect();
        report_channel(wanted.id.as_str(), &sales, &theirs, &mut report);
    }
    Ok(report)
}

pub fn render(report: &FinanceReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "{:<10} {:<16} {:<10} {:>4} {:>12} {:>12} {:>12} {:>12}",
        "channel", "order", "sale", "cur", "invoiced", "received", "credited", "paid back"
    ));
    for order in &report.orders {
        line(format!(
            "{:<10} {:<16} {:<10} {:>4} {:>12} {:>12} {:>12} {:>12}",
            order.channel,
            order.order,
            order.sale.as_deref().unwrap_or("-"),
            order.currency,
            order.invoiced,
            order.received,
            order.credited,
            order.paid_back
        ));
        for variance in &order.variances {
            line(format!(
                "    ! {:?}: {}",
                variance.kind, variance.explanation
            ));
        }
    }
    line(String::new());
    for (key, totals) in &report.totals {
        line(format!(
            "{key}: {} orders, invoiced {}, received {}, credited {}, paid back {}, {} variance(s)",
            totals.orders,
            totals.invoiced,
            totals.received,
            totals.credited,
            totals.paid_back,
            totals.variances
        ));
    }
    let variances = report.variances();
    line(if variances == 0 {
        "clean: every invoice paid and every credit note settled by the money recorded".to_owned()
    } else {
        format!("{variances} variance(s) to explain")
    });
    out
}

/// One row per order, variances joined, for a spreadsheet.
pub fn to_csv(report: &FinanceReport) -> anyhow::Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "channel",
        "order",
        "sale",
        "currency",
        "invoiced",
        "received",
        "credited",
        "paid_back",
        "variances",
    ])?;
    for order in &report.orders {
        let variances: Vec<String> = order
            .variances
            .iter()
            .map(|v| format!("{:?}: {}", v.kind, v.explanation))
            .collect();
        writer.write_record([
            order.channel.clone(),
            order.order.clone(),
            order.sale.clone().unwrap_or_default(),
            order.currency.clone(),
            order.invoiced.to_string(),
            order.received.to_string(),
            order.credited.to_string(),
            order.paid_back.to_string(),
            variances.join("; "),
        ])?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}
