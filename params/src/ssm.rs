//! Parameters in AWS SSM Parameter Store, as the original kit keeps them.

use std::fmt;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::types::ParameterType;

use crate::{ParamsError, Result, validate_name, validate_pair};

/// The region used when neither the spec, `AWS_REGION`/`AWS_DEFAULT_REGION` nor the AWS profile
/// names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// `GetParameters` takes at most this many names per call.
const GET_BATCH: usize = 10;

/// How to reach SSM; every field left `None` comes from the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SsmSettings {
    /// An SSM-compatible endpoint such as `http://127.0.0.1:5000`. When `None`:
    /// `AWS_ENDPOINT_URL_SSM`, then `AWS_ENDPOINT_URL`, then AWS itself.
    pub endpoint: Option<String>,
    /// When `None`: `AWS_REGION`, `AWS_DEFAULT_REGION`, the AWS profile, then [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Fixed credentials (tests, emulators). When `None`: the standard AWS credential chain
    /// (environment, profile, web identity, ECS task role, EC2 instance role).
    pub credentials: Option<StaticCredentials>,
}

/// An access key pair given directly instead of through the AWS credential chain.
#[derive(Clone, PartialEq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .finish()
    }
}

/// AWS SSM Parameter Store. Values are written as `String` parameters, overwriting.
#[derive(Debug, Clone)]
pub struct SsmStore {
    client: Client,
    region: String,
    endpoint: Option<String>,
}

impl SsmStore {
    /// Builds a client; nothing is sent until the first call, so wrong credentials or an
    /// unreachable endpoint show up there.
    pub async fn connect(settings: SsmSettings) -> Result<Self> {
        // Region from the spec, the environment or the profile, never from EC2 instance metadata:
        // the kit's default region is a fixed fallback instead.
        let region = match settings.region {
            Some(region) => Region::new(region),
            None => {
                let chain = RegionProviderChain::first_try(
                    aws_config::environment::region::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(aws_config::profile::ProfileFileRegionProvider::builder().build())
                .or_else(Region::new(DEFAULT_REGION));
                chain
                    .region()
                    .await
                    .unwrap_or_else(|| Region::new(DEFAULT_REGION))
            }
        };
        let endpoint = settings.endpoint.or_else(|| {
            ["AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        });

        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region.clone());
        if let Some(endpoint) = &endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(creds) = settings.credentials {
            loader = loader.credentials_provider(Credentials::new(
                creds.access_key_id,
                creds.secret_access_key,
                None,
                None,
                "rtb-params-static",
            ));
        }
        let config = loader.load().await;
        Ok(Self {
            client: Client::new(&config),
            region: region.to_string(),
            endpoint,
        })
    }

    /// Wraps a client the caller configured itself.
    pub fn from_client(client: Client) -> Self {
        let config = client.config();
        let region = config
            .region()
            .map_or_else(|| DEFAULT_REGION.to_owned(), ToString::to_string);
        Self {
            client,
            region,
            endpoint: None,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn get(&self, name: &str) -> Result<Option<String>> {
        validate_name(name)?;
        let response = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await;
        match response {
            Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                Ok(None)
            }
            Err(err) => Err(ssm_error("GetParameter", name, err)),
        }
    }

    pub async fn get_many<N: AsRef<str>>(&self, names: &[N]) -> Result<Vec<Option<String>>> {
        for name in names {
            validate_name(name.as_ref())?;
        }
        let mut found = std::collections::HashMap::new();
        for chunk in names.chunks(GET_BATCH) {
            let mut request = self.client.get_parameters().with_decryption(true);
            for name in chunk {
                request = request.names(name.as_ref());
            }
            let out = request.send().await.map_err(|err| {
                let names: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
                ssm_error("GetParameters", &names.join(", "), err)
            })?;
            for parameter in out.parameters.unwrap_or_default() {
                if let (Some(name), Some(value)) = (parameter.name, parameter.value) {
                    found.insert(name, value);
                }
            }
        }
        Ok(names
            .iter()
            .map(|name| found.get(name.as_ref()).cloned())
            .collect())
    }

    pub async fn put(&self, name: &str, value: &str) -> Result<()> {
        validate_pair(name, value)?;
        self.client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .map_err(|err| ssm_error("PutParameter", name, err))?;
        Ok(())
    }

    /// Writes the pairs one by one (SSM has no batch write): a failure part-way leaves the earlier
    /// ones written.
    pub async fn put_many<N: AsRef<str>, V: AsRef<str>>(&self, pairs: &[(N, V)]) -> Result<()> {
        for (name, value) in pairs {
            validate_pair(name.as_ref(), value.as_ref())?;
        }
        for (name, value) in pairs {
            self.put(name.as_ref(), value.as_ref()).await?;
        }
        Ok(())
    }
}

impl SsmStore {
    /// The `ssm://` spec that opens this store.
    pub fn spec(&self) -> String {
        let mut query = vec![format!("region={}", self.region)];
        if let Some(endpoint) = &self.endpoint {
            query.push(format!("endpoint={endpoint}"));
        }
        format!("ssm://?{}", query.join("&"))
    }
}

impl fmt::Display for SsmStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssm in {}", self.region)?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " at {endpoint}")?;
        }
        Ok(())
    }
}

fn ssm_error(
    operation: &'static str,
    name: &str,
    err: impl std::error::Error + 'static,
) -> ParamsError {
    // each cause once, by its message; the SDK's debug dump of the same chain is kilobytes
    let mut causes: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        next = cause.source();
    }
    let detail = if causes.iter().any(|c| c.contains("loading credentials")) {
        "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run `aws configure`, or choose a profile with AWS_PROFILE".to_owned()
    } else {
        causes.join(": ")
    };
    ParamsError::Ssm {
        operation,
        name: name.to_owned(),
        detail,
    }
}
