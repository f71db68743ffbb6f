//! Reads infra/template.yaml so the local stack builds exactly what AWS would: the queues,
//! the table and the functions' environment come from the template, never from a copy.
//! Handles the intrinsics the template uses: !Ref, !Sub, !GetAtt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value};

pub struct Template {
    root: Mapping,
}

/// What intrinsics resolve against: parameters, and the resources created so far.
#[derive(Debug, Default, Clone)]
pub struct Resolver {
    pub parameters: HashMap<String, String>,
    /// `Ref` of a resource: a queue's URL, a table's name.
    pub refs: HashMap<String, String>,
    /// `GetAtt`, keyed `Logical.Attribute`.
    pub attributes: HashMap<String, String>,
    /// Parameters of type Number: a `!Ref` to one is a JSON number, as CloudFormation passes it.
    pub numbers: HashSet<String>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Mapping,
    pub metadata: Mapping,
}

impl Resource {
    /// A function's binary (`Metadata.BuildProperties.Binary`): its name under `cargo lambda`.
    pub fn binary(&self) -> Option<&str> {
        self.metadata
            .get("BuildProperties")?
            .get("Binary")?
            .as_str()
    }
}

/// A function of the template and the binary it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub logical_id: String,
    pub binary: String,
}

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let root: Mapping = serde_yaml_ng::from_str(text).context("the template is not YAML")?;
        Ok(Self { root })
    }

    /// The project's own template, found from this crate's location.
    pub fn project() -> anyhow::Result<Self> {
        Self::load(&crate::project_root().join("infra/template.yaml"))
    }

    pub fn resources(&self) -> Vec<Resource> {
        let Some(Value::Mapping(resources)) = self.root.get("Resources") else {
            return Vec::new();
        };
        resources
            .iter()
            .filter_map(|(id, body)| {
                let mapping = |key: &str| match body.get(key) {
                    Some(Value::Mapping(m)) => m.clone(),
                    _ => Mapping::new(),
                };
                Some(Resource {
                    logical_id: id.as_str()?.to_owned(),
                    kind: body.get("Type")?.as_str()?.to_owned(),
                    properties: mapping("Properties"),
                    metadata: mapping("Metadata"),
                })
            })
            .collect()
    }

    /// The functions (`AWS::Serverless::Function`) with their binaries, in template order.
    pub fn functions(&self) -> anyhow::Result<Vec<Function>> {
        self.resources_of("AWS::Serverless::Function")
            .into_iter()
            .map(|f| {
                let binary = f
                    .binary()
                    .with_context(|| format!("{} has no BuildProperties.Binary", f.logical_id))?
                    .to_owned();
                Ok(Function {
                    logical_id: f.logical_id,
                    binary,
                })
            })
            .collect()
    }

    pub fn resources_of(&self, kind: &str) -> Vec<Resource> {
        self.resources()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect()
    }

    /// Defaults of the template's parameters.
    pub fn parameter_defaults(&self) -> HashMap<String, String> {
        let Some(Value::Mapping(parameters)) = self.root.get("Parameters") else {
            return HashMap::new();
        };
        parameters
            .iter()
            .filter_map(|(name, body)| {
                let default = match body.get("Default")? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((name.as_str()?.to_owned(), default))
            })
            .collect()
    }

    /// The names of the parameters of type Number.
    pub fn number_parameters(&self) -> HashSet<String> {
        let Some(Value::Mapping(parameters)) = self.root.get("Parameters") else {
            return HashSet::new();
        };
        parameters
            .iter()
            .filter(|(_, body)| body.get("Type").and_then(Value::as_str) == Some("Number"))
            .filter_map(|(name, _)| name.as_str().map(str::to_owned))
            .collect()
    }

    /// A function's property as deployed: its own, else the one in `Globals.Function`.
    pub fn function_property(&self, logical_id: &str, name: &str) -> Option<Value> {
        let own = self
            .resources()
            .into_iter()
            .find(|r| r.logical_id == logical_id)
            .and_then(|r| r.properties.get(name).cloned());
        own.or_else(|| {
            self.root
                .get("Globals")
                .and_then(|g| g.get("Function"))
                .and_then(|f| f.get(name))
                .cloned()
        })
    }

    /// The environment a function gets: Globals, then its own variables, resolved.
    pub fn function_environment(
        &self,
        logical_id: &str,
        resolver: &Resolver,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut environment = BTreeMap::new();
        let globals = self
            .root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"));
        let function = self
            .resources()
            .into_iter()
            .find(|r| r.logical_id == logical_id)
            .ok_or_else(|| anyhow!("no resource {logical_id} in the template"))?;
        let own = function
            .properties
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .cloned();
        for variables in [globals.cloned(), own].into_iter().flatten() {
            if let Value::Mapping(variables) = variables {
                for (name, value) in variables {
                    let name = name
                        .as_str()
                        .ok_or_else(|| anyhow!("a variable name is not a string"))?;
                    let value = resolver.resolve(&value)?;
                    environment.insert(name.to_owned(), json_scalar(&value));
                }
            }
        }
        Ok(environment)
    }
}

/// A resolved scalar as the string SQS attributes and environments use.
pub fn json_scalar(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Resolver {
    /// YAML with intrinsics -> plain JSON, or an error naming what could not be resolved.
    pub fn resolve(&self, value: &Value) -> anyhow::Result<Json> {
        Ok(match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(Json::Null),
            Value::String(s) => Json::String(s.clone()),
            Value::Sequence(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.resolve(i))
                    .collect::<anyhow::Result<_>>()?,
            ),
            Value::Mapping(map) => {
                let mut object = serde_json::Map::new();
                for (key, value) in map {
                    let key = key
                        .as_str()
                        .ok_or_else(|| anyhow!("a mapping key is not a string"))?;
                    object.insert(key.to_owned(), self.resolve(value)?);
                }
                Json::Object(object)
            }
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let argument = tagged
                    .value
                    .as_str()
                    .ok_or_else(|| anyhow!("{tag} needs a string argument here"))?;
                match tag.as_str() {
                    "!Ref" => {
                        let value = self.reference(argument)?;
                        match value.parse::<serde_json::Number>() {
                            Ok(number) if self.numbers.contains(argument) => Json::Number(number),
                            _ => Json::String(value),
                        }
                    }
                    "!GetAtt" => Json::String(
                        self.attributes
                            .get(argument)
                            .cloned()
                            .ok_or_else(|| anyhow!("!GetAtt {argument} is not known (yet)"))?,
                    ),
                    "!Sub" => Json::String(self.substitute(argument)?),
                    other => bail!("intrinsic {other} is not supported by the local stack"),
                }
            }
        })
    }

    /// The same for CloudFormation's JSON form (`{"Ref": ..}`, `{"Fn::GetAtt": [..]}`,
    /// `{"Fn::Sub": ".."}`), as SAM's transform writes it.
    pub fn resolve_json(&self, value: &Json) -> anyhow::Result<Json> {
        Ok(match value {
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.resolve_json(i))
                    .collect::<anyhow::Result<_>>()?,
            ),
            Json::Object(map) if map.len() == 1 => {
                let (key, argument) = map.iter().next().ok_or_else(|| anyhow!("empty"))?;
                match (key.as_str(), argument) {
                    ("Ref", Json::String(name)) => Json::String(self.reference(name)?),
                    ("Fn::GetAtt", Json::Array(parts)) => {
                        let parts: Vec<_> = parts.iter().filter_map(Json::as_str).collect();
                        let name = parts.join(".");
                        Json::String(
                            self.attributes
                                .get(&name)
                                .cloned()
                                .ok_or_else(|| anyhow!("Fn::GetAtt {name} is not known (yet)"))?,
                        )
                    }
                    ("Fn::Sub", Json::String(text)) => Json::String(self.substitute(text)?),
                    (intrinsic, _) if intrinsic == "Ref" || intrinsic.starts_with("Fn::") => {
                        bail!(
                            "intrinsic {intrinsic} (in this form) is not supported by the local stack"
                        )
                    }
                    (key, inner) => Json::Object(
                        [(key.to_owned(), self.resolve_json(inner)?)]
                            .into_iter()
                            .collect(),
                    ),
                }
            }
            Json::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve_json(v)?)))
                    .collect::<anyhow::Result<_>>()?,
            ),
            other => other.clone(),
        })
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        self.parameters
            .get(name)
            .or_else(|| self.refs.get(name))
            .cloned()
            .or_else(|| pseudo_parameter(name))
            .ok_or_else(|| anyhow!("!Ref {name} is not known (yet)"))
    }

    fn substitute(&self, text: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| anyhow!("unclosed ${{ in {text:?}"))?
                + start;
            let name = &rest[start + 2..end];
            let value = match name.split_once('.') {
                Some(_) => self
                    .attributes
                    .get(name)
                    .cloned()
                    .ok_or_else(|| anyhow!("${{{name}}} is not known (yet)"))?,
                None => self.reference(name)?,
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn pseudo_parameter(name: &str) -> Option<String> {
    match name {
        "AWS::Partition" => Some("aws".to_owned()),
        "AWS::Region" => {
            Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-west-1".to_owned()))
        }
        "AWS::AccountId" => Some("123456789012".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_template_declares_the_order_intake_resources() {
        let template = Template::project().unwrap_or_else(|e| panic!("{e:#}"));
        let queues: Vec<_> = template
            .resources_of("AWS::SQS::Queue")
            .into_iter()
            .map(|r| r.logical_id)
            .collect();
        assert!(queues.contains(&"OrdersQueue".to_owned()));
        assert!(queues.contains(&"OrdersDeadLetterQueue".to_owned()));
        assert_eq!(template.resources_of("AWS::DynamoDB::Table").len(), 1);
    }

    #[test]
    fn intrinsics_resolve_against_parameters_and_created_resources() {
        let resolver = Resolver {
            parameters: HashMap::from([("Stage".to_owned(), "t1".to_owned())]),
            refs: HashMap::from([("Q".to_owned(), "http://q".to_owned())]),
            attributes: HashMap::from([("Q.Arn".to_owned(), "arn:q".to_owned())]),
            numbers: HashSet::new(),
        };
        let yaml: Value =
            serde_yaml_ng::from_str("{a: !Sub 'x-${Stage}-y', b: !GetAtt Q.Arn, c: !Ref Q, d: 3}")
                .unwrap_or(Value::Null);
        let json = resolver.resolve(&yaml).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"a": "x-t1-y", "b": "arn:q", "c": "http://q", "d": 3})
        );
        let unknown: Value = serde_yaml_ng::from_str("!Ref Nope").unwrap_or(Value::Null);
        assert!(resolver.resolve(&unknown).is_err());
    }
}
