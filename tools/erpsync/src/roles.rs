//! The IAM roles of the local stack, derived from infra/template.yaml through SAM's transform
//! (what `sam deploy` would create): each function's `AWS::IAM::Role` with its inline policies
//! and the AWS managed policies SAM attaches, and the operator's policy (`OperatorPolicy`),
//! their intrinsics resolved to the local resources. moto enforces them (the stack starts it
//! with IAM on), so a call the template does not grant is refused here as it would be on AWS.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_sqs::config::Credentials;
use serde_json::{Value as Json, json};

use crate::stack::{LocalResources, project_root, sdk_config_as, stack_dir};

/// The stack's own identity (tools/erpsync/moto_server.py): it assumes the roles, as the
/// Lambda service does on AWS.
const STACK_USER_ARN: &str = "arn:aws:iam::123456789012:user/erpsync-local";

/// The name under which the operator CLI's role is kept.
pub const OPERATOR: &str = "Operator";
/// The template's managed policy for operators (README "Operating it").
const OPERATOR_POLICY: &str = "OperatorPolicy";

/// A role as the transformed template declares it (intrinsics not yet resolved).
#[derive(Debug, Clone)]
pub struct DeclaredRole {
    /// The function's logical id (`OrderSyncFunction`), or [`OPERATOR`].
    pub name: String,
    /// Inline policies: name and document.
    pub inline: Vec<(String, Json)>,
    /// ARNs of the managed policies attached.
    pub managed: Vec<Json>,
}

impl DeclaredRole {
    /// The same role without `action` in any statement: what a role missing one grant does.
    pub fn without_action(&self, action: &str) -> Self {
        let mut role = self.clone();
        for (_, document) in &mut role.inline {
            for statement in document["Statement"].as_array_mut().into_iter().flatten() {
                if let Some(actions) = statement["Action"].as_array_mut() {
                    actions.retain(|a| a.as_str() != Some(action));
                }
            }
        }
        role
    }
}

/// SAM's transform of the project's template (infra/lint/transform.py in the stack's venv,
/// the same `make lint` checks), run once per process.
pub fn transformed_template() -> anyhow::Result<&'static Json> {
    static TRANSFORMED: OnceLock<Result<Json, String>> = OnceLock::new();
    TRANSFORMED
        .get_or_init(|| {
            transform(&project_root().join("infra/template.yaml")).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// The CloudFormation AWS SAM makes of `template`.
pub fn transform(template: &Path) -> anyhow::Result<Json> {
    let python = stack_dir().join("venv/bin/python3");
    let output = std::process::Command::new(&python)
        .arg(project_root().join("infra/lint/transform.py"))
        .arg(template)
        .output()
        .with_context(|| format!("running SAM's transform with {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "SAM's transform of {} failed: {}",
            template.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("SAM's transform printed no JSON")
}

/// Every function's role and the operator's, from a transformed template.
pub fn declared_roles(transformed: &Json) -> anyhow::Result<Vec<DeclaredRole>> {
    let resources = transformed["Resources"]
        .as_object()
        .ok_or_else(|| anyhow!("the transformed template has no Resources"))?;
    let mut roles = Vec::new();
    for (id, resource) in resources {
        match resource["Type"].as_str() {
            Some("AWS::Lambda::Function") => {
                let role_id = resource["Properties"]["Role"]["Fn::GetAtt"][0]
                    .as_str()
                    .ok_or_else(|| anyhow!("function {id}'s role is not one of the template's"))?;
                let role = &resources
                    .get(role_id)
                    .ok_or_else(|| anyhow!("function {id}'s role {role_id} is not declared"))?["Properties"];
                let inline = role["Policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let name = p["PolicyName"].as_str().unwrap_or("inline").to_owned();
                        (name, p["PolicyDocument"].clone())
                    })
                    .collect();
                let managed = role["ManagedPolicyArns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                roles.push(DeclaredRole {
                    name: id.clone(),
                    inline,
                    managed,
                });
            }
            Some("AWS::IAM::ManagedPolicy") if id == OPERATOR_POLICY => {
                roles.push(DeclaredRole {
                    name: OPERATOR.to_owned(),
                    inline: vec![(id.clone(), resource["Properties"]["PolicyDocument"].clone())],
                    managed: Vec::new(),
                });
            }
            _ => {}
        }
    }
    Ok(roles)
}

/// Temporary credentials of an assumed role.
#[derive(Debug, Clone)]
pub struct RoleCredentials {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl RoleCredentials {
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            Some(self.session_token.clone()),
            None,
            "erpsync-local-role",
        )
    }

    /// SDK configuration that reaches moto as this role.
    pub async fn sdk_config(&self, endpoint: &str) -> SdkConfig {
        sdk_config_as(endpoint, self.credentials()).await
    }

    /// The standard environment variables of these credentials.
    pub fn environment(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", &self.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_access_key),
            ("AWS_SESSION_TOKEN", &self.session_token),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }

    /// As a `credential_process` prints them (AWS SDKs' "sourcing credentials with an
    /// external process").
    pub fn process_output(&self) -> String {
        json!({
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
        })
        .to_string()
    }
}

/// The roles of one stage, created in moto and assumed, by function logical id (and
/// [`OPERATOR`]).
#[derive(Debug, Clone, Default)]
pub struct StageRoles {
    pub by_name: HashMap<String, RoleCredentials>,
}

impl StageRoles {
    pub fn get(&self, name: &str) -> anyhow::Result<&RoleCredentials> {
        self.by_name
            .get(name)
            .ok_or_else(|| anyhow!("the template declares no role for {name}"))
    }
}

/// Creates every role the template declares for `resources`' stage and assumes each.
pub async fn create_roles(
    sdk: &SdkConfig,
    resources: &LocalResources,
) -> anyhow::Result<StageRoles> {
    let mut roles = StageRoles::default();
    for declared in declared_roles(transformed_template()?)? {
        let credentials = create_role(sdk, resources, &declared, &declared.name).await?;
        roles.by_name.insert(declared.name, credentials);
    }
    Ok(roles)
}

/// Creates `declared` as role `erpsync-<stage>-<suffix>` and assumes it. The trust policy is
/// the local stack's own (the template's trusts `lambda.amazonaws.com`, which nothing here
/// can act as); only the permissions are the template's.
pub async fn create_role(
    sdk: &SdkConfig,
    resources: &LocalResources,
    declared: &DeclaredRole,
    suffix: &str,
) -> anyhow::Result<RoleCredentials> {
    let iam = aws_sdk_iam::Client::new(sdk);
    let name = format!("erpsync-{}-{suffix}", resources.stage);
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": STACK_USER_ARN},
            "Action": "sts:AssumeRole",
        }],
    });
    let created = iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .with_context(|| format!("creating role {name}"))?;
    let arn = created
        .role()
        .map(|r| r.arn().to_owned())
        .ok_or_else(|| anyhow!("role {name} has no ARN"))?;
    for (policy, document) in &declared.inline {
        let document = resources
            .resolver
            .resolve_json(document)
            .with_context(|| format!("{}'s policy {policy}", declared.name))?;
        iam.put_role_policy()
            .role_name(&name)
            .policy_name(policy)
            .policy_document(document.to_string())
            .send()
            .await
            .with_context(|| format!("giving role {name} policy {policy}"))?;
    }
    // AWS managed policies as AWS defines them (moto carries their documents):
    // AWSLambdaBasicExecutionRole grants only CloudWatch Logs, which the Lambda runtime
    // writes, not the code; AWSLambdaSQSQueueExecutionRole the event source mapping's
    // ReceiveMessage, DeleteMessage and GetQueueAttributes. One moto does not know fails here.
    for managed in &declared.managed {
        let arn = crate::template::json_scalar(&resources.resolver.resolve_json(managed)?);
        iam.attach_role_policy()
            .role_name(&name)
            .policy_arn(&arn)
            .send()
            .await
            .with_context(|| format!("attaching managed policy {arn} to role {name}"))?;
    }
    let assumed = aws_sdk_sts::Client::new(sdk)
        .assume_role()
        .role_arn(&arn)
        .role_session_name(format!("{suffix}-local"))
        .send()
        .await
        .with_context(|| format!("assuming role {name}"))?;
    let credentials = assumed
        .credentials()
        .ok_or_else(|| anyhow!("assuming role {name} gave no credentials"))?;
    Ok(RoleCredentials {
        role_arn: arn,
        access_key_id: credentials.access_key_id().to_owned(),
        secret_access_key: credentials.secret_access_key().to_owned(),
        session_token: credentials.session_token().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_sync_role_is_read_from_the_transformed_template() {
        let transformed = json!({"Resources": {
            "OrderSyncFunction": {"Type": "AWS::Lambda::Function",
                "Properties": {"Role": {"Fn::GetAtt": ["OrderSyncFunctionRole", "Arn"]}}},
            "OrderSyncFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {
                "ManagedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
                "Policies": [{"PolicyName": "P0", "PolicyDocument": {"Statement": [
                    {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem"],
                     "Resource": {"Fn::GetAtt": ["SyncTable", "Arn"]}}]}}]}},
        }});
        let roles = declared_roles(&transformed).unwrap_or_else(|e| panic!("{e:#}"));
        let [role] = roles.as_slice() else {
            panic!("one role expected, got {roles:?}")
        };
        assert_eq!(role.name, "OrderSyncFunction");
        assert_eq!(role.managed.len(), 1);
        let without = role.without_action("dynamodb:BatchGetItem");
        assert_eq!(
            without.inline[0].1["Statement"][0]["Action"],
            json!(["dynamodb:GetItem"])
        );
    }
}
