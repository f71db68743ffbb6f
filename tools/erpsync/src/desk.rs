//! What people do in the ERP's own client, over Tryton's REST API: look records up, create
//! and change them, press buttons, dispatch a sale (in full or in part, with the courier's
//! tracking number), count stock. The demo and the end-to-end tests act as the warehouse
//! and the back office through it; the integration itself never uses it.

use anyhow::{Context, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct ErpDesk {
    http: reqwest::Client,
    /// `http://host:port`; the database is `erpsync`.
    url: String,
    key: String,
}

impl ErpDesk {
    pub fn new(url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    fn model(&self, model: &str) -> String {
        format!("{}/erpsync/rest/model/{model}", self.url)
    }

    fn context() -> String {
        URL_SAFE.encode(json!({"company": 1}).to_string())
    }

    pub async fn search(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
    ) -> anyhow::Result<Vec<Value>> {
        let mut query: Vec<(&str, String)> =
            fields.iter().map(|f| ("f", (*f).to_owned())).collect();
        query.push(("d", URL_SAFE.encode(domain.to_string())));
        let response = self
            .http
            .get(self.model(model))
            .bearer_auth(&self.key)
            .query(&query)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "Tryton answered {status}: {body}");
        body.as_array()
            .cloned()
            .ok_or_else(|| anyhow!("not a list: {body}"))
    }

    /// Creates a record; its id. Concurrent creates draw party codes from one sequence, so
    /// a collision is retried, as the connector does.
    pub async fn create(&self, model: &str, body: Value) -> anyhow::Result<i64> {
        for _ in 0..5 {
            let response = self
                .http
                .post(self.model(model))
                .bearer_auth(&self.key)
                .header("X-Tryton-Context", Self::context())
                .json(&body)
                .send()
                .await?;
            let status = response.status();
            let created: Value = response.json().await.unwrap_or_default();
            if status.is_success() {
                return created["id"]
                    .as_i64()
                    .with_context(|| format!("{model} created without an id: {created}"));
            }
            let conflict = created["message"]
                .as_str()
                .is_some_and(|m| m.contains("must be unique"));
            ensure!(conflict, "creating {model}: {status} {created}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        bail!("creating {model}: kept colliding")
    }

    pub async fn write(&self, model: &str, id: i64, body: Value) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!("{}/{id}", self.model(model)))
            .bearer_auth(&self.key)
            .header("X-Tryton-Context", Self::context())
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        ensure!(
            status.is_success(),
            "writing {model} {id}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Presses a button on a record (quote, confirm, assign_try, do, ...).
    pub async fn button(&self, model: &str, id: i64, button: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/{id}/{button}", self.model(model)))
            .bearer_auth(&self.key)
            .header("X-Tryton-Context", Self::context())
            .json(&json!({}))
            .send()
            .await?;
        let status = response.status();
        ensure!(
            status.is_success(),
            "{model} {id} {button}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Ids of the customer shipments of the sale with this reference.
    pub async fn sale_shipments(&self, reference: &str) -> anyhow::Result<Vec<i64>> {
        let sales = self
            .search(
                "sale.sale",
                json!([["reference", "=", reference]]),
                &["shipments"],
            )
            .await?;
        let sale = sales
            .first()
            .with_context(|| format!("no sale {reference}"))?;
        Ok(sale["shipments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .collect())
    }

    /// The warehouse dispatches the sale's next open shipment, as Tryton's workflow does
    /// (assign, pick, pack, ship, done). `short` lists SKUs shipped in part now: the rest
    /// becomes Tryton's back order, a follow-up shipment. The courier's tracking number goes
    /// in the shipment's reference. The shipment's id.
    pub async fn dispatch_part(
        &self,
        reference: &str,
        short: &[(&str, f64)],
        tracking: Option<&str>,
    ) -> anyhow::Result<i64> {
        let shipments = self
            .search(
                "stock.shipment.out",
                json!([
                    ["id", "in", self.sale_shipments(reference).await?],
                    ["state", "not in", ["done", "cancelled"]]
                ]),
                &[
                    "state",
                    "inventory_moves.product.code",
                    "inventory_moves.quantity",
                ],
            )
            .await?;
        let shipment = shipments
            .first()
            .with_context(|| format!("no open shipment for {reference}"))?;
        let id = shipment["id"].as_i64().unwrap_or_default();
        for (sku, quantity) in short {
            let moves = shipment["inventory_moves"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let line = moves
                .iter()
                .find(|m| m["product"]["code"] == *sku)
                .with_context(|| format!("{sku} is not on shipment {id}"))?;
            self.write(
                "stock.move",
                line["id"].as_i64().unwrap_or_default(),
                json!({"quantity": quantity}),
            )
            .await?;
        }
        if let Some(tracking) = tracking {
            self.write("stock.shipment.out", id, json!({"reference": tracking}))
                .await?;
        }
        for action in ["assign_try", "pick", "pack", "ship", "do"] {
            self.button("stock.shipment.out", id, action).await?;
        }
        Ok(id)
    }

    /// Ships every open shipment of the sale in full.
    pub async fn dispatch(&self, reference: &str) -> anyhow::Result<()> {
        let open = self
            .search(
                "stock.shipment.out",
                json!([
                    ["id", "in", self.sale_shipments(reference).await?],
                    ["state", "not in", ["done", "cancelled"]]
                ]),
                &["state"],
            )
            .await?;
        for shipment in open {
            let id = shipment["id"].as_i64().unwrap_or_default();
            for action in ["assign_try", "pick", "pack", "ship", "do"] {
                self.button("stock.shipment.out", id, action).await?;
            }
        }
        Ok(())
    }

    /// A stock count: the product's quantity in storage becomes `quantity`.
    pub async fn count_stock(&self, product_code: &str, quantity: u32) -> anyhow::Result<()> {
        let product = self
            .search("product.product", json!([["code", "=", product_code]]), &[])
            .await?;
        let storage = self
            .search("stock.location", json!([["code", "=", "STO"]]), &[])
            .await?;
        let (Some(product), Some(storage)) = (product.first(), storage.first()) else {
            bail!("no product {product_code} or no storage location");
        };
        let id = self
            .create(
                "stock.inventory",
                json!({"location": storage["id"], "company": 1,
                       "lines": [["create", [{"product": product["id"], "quantity": quantity}]]]}),
            )
            .await?;
        self.button("stock.inventory", id, "confirm").await
    }
}
