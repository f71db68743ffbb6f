//! One way to build a test's world, which each test file configures: the shared Tryton or one
//! of its own (a test that moves stock or dispatches must not share it), sandbox stores that
//! the channels' Admin APIs point at, template parameters, config changes and a wrapped ERP
//! port (fault injection).

use std::collections::HashMap;

use erpsync_connectors::TrytonClient;
use erpsync_core::config::Config;
use erpsync_core::ports::SalesErp;
use sandbox::{Sandbox, ShopSetup};

use crate::{Stack, Tryton, World, init_logs};

type Configure<'a> = Box<dyn FnOnce(&mut Config) + 'a>;
type Wrap<'a> = Box<dyn FnOnce(TrytonClient) -> Box<dyn SalesErp> + 'a>;

#[derive(Default)]
pub struct WorldBuilder<'a> {
    own_tryton: Option<String>,
    shops: Vec<(String, ShopSetup)>,
    parameters: Vec<(String, String)>,
    configure: Vec<Configure<'a>>,
    wrap: Option<Wrap<'a>>,
}

/// The world and what was started for it alone; dropped with it.
pub struct Built {
    pub world: World,
    /// The Tryton of its own, when asked for (else the shared one).
    pub tryton: Option<Tryton>,
    /// The sandbox serving the stores, when any were asked for.
    pub sandbox: Option<Sandbox>,
}

impl Built {
    /// The world, its own Tryton and its sandbox, for a test world that holds them apart.
    pub fn parts(self) -> (World, Tryton, Sandbox) {
        let tryton = self
            .tryton
            .unwrap_or_else(|| panic!("this world was built on the shared Tryton"));
        let sandbox = self
            .sandbox
            .unwrap_or_else(|| panic!("this world was built without sandbox stores"));
        (self.world, tryton, sandbox)
    }

    /// The world and its own Tryton (a world without stores).
    pub fn with_tryton(self) -> (World, Tryton) {
        let tryton = self
            .tryton
            .unwrap_or_else(|| panic!("this world was built on the shared Tryton"));
        (self.world, tryton)
    }
}

impl<'a> WorldBuilder<'a> {
    /// A Tryton of its own, seeded from the template, its logs under `<run dir>/<label>-…`.
    pub fn own_tryton(mut self, label: &str) -> Self {
        self.own_tryton = Some(label.to_owned());
        self
    }

    /// A sandbox store for `channel`: its Admin API URL is pointed at it.
    pub fn shop(mut self, channel: &str, setup: ShopSetup) -> Self {
        self.shops.push((channel.to_owned(), setup));
        self
    }

    /// Template parameters (e.g. `OrdersMaxReceiveCount`).
    pub fn parameters(mut self, parameters: &[(&str, &str)]) -> Self {
        self.parameters.extend(
            parameters
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        self
    }

    /// A change to the example config, applied after the stores are pointed at.
    pub fn configure(mut self, change: impl FnOnce(&mut Config) + 'a) -> Self {
        self.configure.push(Box::new(change));
        self
    }

    /// order-sync's ERP port wrapped around the Tryton client.
    pub fn wrap_erp(mut self, wrap: impl FnOnce(TrytonClient) -> Box<dyn SalesErp> + 'a) -> Self {
        self.wrap = Some(Box::new(wrap));
        self
    }

    /// On the given ERP rather than the shared or an own Tryton.
    pub async fn start_on(self, erp_url: &str, erp_key: &str) -> World {
        // The world alone is answered: stores or a Tryton of its own would be dropped with it.
        assert!(
            self.shops.is_empty() && self.own_tryton.is_none(),
            "start_on keeps no sandbox stores or own Tryton: use start()"
        );
        self.build(Some((erp_url.to_owned(), erp_key.to_owned())))
            .await
            .world
    }

    pub async fn start(self) -> Built {
        self.build(None).await
    }

    async fn build(self, erp: Option<(String, String)>) -> Built {
        init_logs();
        let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
        let tryton = match &self.own_tryton {
            Some(label) if erp.is_none() => {
                let run_dir = stack
                    .run_dir
                    .join(format!("{label}-{}", uuid::Uuid::new_v4().simple()));
                Some(
                    Tryton::start(&stack.venv, &stack.tryton_template, &run_dir)
                        .await
                        .unwrap_or_else(|e| panic!("{e:#}")),
                )
            }
            _ => None,
        };
        let (erp_url, erp_key) = match (&erp, &tryton) {
            (Some((url, key)), _) => (url.clone(), key.clone()),
            (None, Some(own)) => (own.url.clone(), own.api_key.clone()),
            (None, None) => (stack.tryton_url.clone(), stack.tryton_key.clone()),
        };
        let sandbox = if self.shops.is_empty() {
            None
        } else {
            let sandbox = Sandbox::start("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            Some(sandbox)
        };
        let mut admin_urls = HashMap::new();
        if let Some(sandbox) = &sandbox {
            for (channel, setup) in self.shops {
                admin_urls.insert(channel, sandbox.admin_url(&setup.domain));
                sandbox.shops.add(setup);
            }
        }
        let configure = self.configure;
        let configure = move |config: &mut Config| {
            for channel in &mut config.channels {
                if let (Some(api), Some(url)) = (
                    channel.admin_api.as_mut(),
                    admin_urls.get(channel.id.as_str()),
                ) {
                    api.url = url.clone();
                }
            }
            for change in configure {
                change(config);
            }
        };
        let wrap = self
            .wrap
            .unwrap_or_else(|| Box::new(|erp| Box::new(erp) as Box<dyn SalesErp>));
        let parameters: Vec<(&str, &str)> = self
            .parameters
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let world = World::build(&erp_url, &erp_key, wrap, &parameters, configure)
            .await
            .unwrap_or_else(|e| panic!("starting the world: {e:#}"));
        Built {
            world,
            tryton,
            sandbox,
        }
    }
}
