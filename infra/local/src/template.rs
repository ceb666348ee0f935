//! Reading the SAM template: parameters with their defaults, resources with their types
//! and properties, and the functions' global environment.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Shape(String),
}

/// One entry of `Resources`.
#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Value,
    pub metadata: Value,
}

/// The parts of the template the local stack and the template tests need.
#[derive(Debug, Clone)]
pub struct Template {
    pub parameters: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Resource>,
    pub globals_function: Value,
    pub raw: Value,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let raw: Value = serde_yaml::from_str(text)?;
        let mut parameters = BTreeMap::new();
        if let Some(Value::Mapping(ps)) = raw.get("Parameters") {
            for (k, v) in ps {
                let name = k
                    .as_str()
                    .ok_or_else(|| TemplateError::Shape("parameter name is not a string".into()))?;
                let default = v.get("Default").cloned().unwrap_or(Value::Null);
                parameters.insert(name.to_string(), default);
            }
        }
        let mut resources = BTreeMap::new();
        let Some(Value::Mapping(rs)) = raw.get("Resources") else {
            return Err(TemplateError::Shape("no Resources section".into()));
        };
        for (k, v) in rs {
            let logical_id = k
                .as_str()
                .ok_or_else(|| TemplateError::Shape("resource name is not a string".into()))?
                .to_string();
            let kind = v
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| TemplateError::Shape(format!("{logical_id} has no Type")))?
                .to_string();
            resources.insert(
                logical_id.clone(),
                Resource {
                    logical_id,
                    kind,
                    properties: v.get("Properties").cloned().unwrap_or(Value::Null),
                    metadata: v.get("Metadata").cloned().unwrap_or(Value::Null),
                },
            );
        }
        let globals_function = raw
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(Self {
            parameters,
            resources,
            globals_function,
            raw,
        })
    }

    /// Resources of one CloudFormation type, in logical-id order.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    /// The `Globals.Function.Environment.Variables` mapping (unevaluated).
    pub fn global_env(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if let Some(Value::Mapping(vars)) = self
            .globals_function
            .get("Environment")
            .and_then(|e| e.get("Variables"))
        {
            for (k, v) in vars {
                if let Some(k) = k.as_str() {
                    out.insert(k.to_string(), v.clone());
                }
            }
        }
        out
    }
}
