//! A small evaluator for the CloudFormation intrinsic functions the template uses.
//! Unknown functions are an error rather than a silent guess, so a template change
//! that the local stack cannot mirror is noticed by the tests.

use std::collections::BTreeMap;

use serde_yaml::Value;
use serde_yaml::value::TaggedValue;

use crate::TemplateError;

/// What `!Ref` and `!GetAtt` resolve to.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    /// Parameters and pseudo parameters (`AWS::AccountId`, `AWS::Region`).
    pub params: BTreeMap<String, String>,
    /// `!Ref` of a resource: its physical id (table name, queue URL, bucket name).
    pub refs: BTreeMap<String, String>,
    /// `!GetAtt Resource.Attribute` values.
    pub attrs: BTreeMap<String, String>,
    /// The template's `Conditions`, unevaluated (`!If` evaluates the one it names).
    pub conditions: BTreeMap<String, Value>,
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

impl Scope {
    fn lookup_ref(&self, name: &str) -> Result<String, TemplateError> {
        self.params
            .get(name)
            .or_else(|| self.refs.get(name))
            .cloned()
            .ok_or_else(|| shape(format!("!Ref {name}: unknown (not provisioned yet?)")))
    }

    fn lookup_attr(&self, name: &str) -> Result<String, TemplateError> {
        self.attrs
            .get(name)
            .cloned()
            .ok_or_else(|| shape(format!("!GetAtt {name}: unknown")))
    }

    /// Evaluates a value to a string (scalars as written, intrinsics resolved).
    pub fn string(&self, v: &Value) -> Result<String, TemplateError> {
        match self.eval(v)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(shape(format!("expected a scalar, got {other:?}"))),
        }
    }

    /// Evaluates intrinsics anywhere inside `v`.
    pub fn eval(&self, v: &Value) -> Result<Value, TemplateError> {
        match v {
            Value::Tagged(t) => self.eval_tagged(t),
            Value::Mapping(m) => {
                if m.len() == 1
                    && let Some((Value::String(k), arg)) = m.iter().next()
                    && (k == "Ref" || k.starts_with("Fn::"))
                {
                    let tag = k.trim_start_matches("Fn::").to_string();
                    return self.eval_tagged(&TaggedValue {
                        tag: serde_yaml::value::Tag::new(tag),
                        value: arg.clone(),
                    });
                }
                let mut out = serde_yaml::Mapping::new();
                for (k, v) in m {
                    out.insert(k.clone(), self.eval(v)?);
                }
                Ok(Value::Mapping(out))
            }
            Value::Sequence(s) => s
                .iter()
                .map(|x| self.eval(x))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Sequence),
            other => Ok(other.clone()),
        }
    }

    fn eval_tagged(&self, t: &TaggedValue) -> Result<Value, TemplateError> {
        let tag = t.tag.to_string();
        let tag = tag.trim_start_matches('!');
        match tag {
            // `AWS::NoValue` removes the property it is the value of: Null here, and the
            // caller drops it (see `provision`'s environment).
            "Ref" if t.value.as_str() == Some("AWS::NoValue") => Ok(Value::Null),
            "Ref" => {
                let name = t.value.as_str().ok_or_else(|| shape("!Ref takes a name"))?;
                Ok(Value::String(self.lookup_ref(name)?))
            }
            "If" => match &t.value {
                Value::Sequence(s) if s.len() == 3 => {
                    let name = s[0]
                        .as_str()
                        .ok_or_else(|| shape("!If takes a condition name"))?;
                    let cond = self
                        .conditions
                        .get(name)
                        .ok_or_else(|| shape(format!("!If {name}: no such condition")))?;
                    match self.eval(cond)? {
                        Value::Bool(true) => self.eval(&s[1]),
                        Value::Bool(false) => self.eval(&s[2]),
                        other => Err(shape(format!(
                            "condition {name} is {other:?}, not a boolean"
                        ))),
                    }
                }
                _ => Err(shape("!If takes [condition, then, else]")),
            },
            "GetAtt" => {
                let name = match &t.value {
                    Value::String(s) => s.clone(),
                    Value::Sequence(parts) => parts
                        .iter()
                        .map(|p| p.as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("."),
                    _ => return Err(shape("!GetAtt takes Resource.Attribute")),
                };
                Ok(Value::String(self.lookup_attr(&name)?))
            }
            "Sub" => {
                let text = t
                    .value
                    .as_str()
                    .ok_or_else(|| shape("!Sub with variables map is not supported"))?;
                Ok(Value::String(self.substitute(text)?))
            }
            "Equals" => {
                let [a, b] = self.pair(&t.value, "!Equals")?;
                Ok(Value::Bool(a == b))
            }
            "Not" => {
                let inner = match &t.value {
                    Value::Sequence(s) if s.len() == 1 => self.eval(&s[0])?,
                    _ => return Err(shape("!Not takes a one-element list")),
                };
                Ok(Value::Bool(!inner.as_bool().unwrap_or(false)))
            }
            other => Err(shape(format!(
                "intrinsic !{other} is not supported by the local stack"
            ))),
        }
    }

    fn pair(&self, v: &Value, what: &str) -> Result<[Value; 2], TemplateError> {
        match v {
            Value::Sequence(s) if s.len() == 2 => Ok([self.eval(&s[0])?, self.eval(&s[1])?]),
            _ => Err(shape(format!("{what} takes two values"))),
        }
    }

    fn substitute(&self, text: &str) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| shape(format!("unterminated ${{ in {text:?}")))?;
            let name = &after[..end];
            let value = if name.contains('.') && !name.starts_with("AWS::") {
                self.lookup_attr(name)?
            } else {
                self.lookup_ref(name)?
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.params.insert("Stage".into(), "t1".into());
        s.params.insert("AWS::AccountId".into(), "123".into());
        s.refs.insert("Q".into(), "http://q".into());
        s.attrs.insert("Q.Arn".into(), "arn:q".into());
        s
    }

    #[test]
    fn sub_ref_and_getatt_resolve_in_long_and_short_forms() {
        let s = scope();
        let v: Value = serde_yaml::from_str("!Sub eds-${Stage}-x-${AWS::AccountId}").unwrap();
        assert_eq!(s.string(&v).unwrap(), "eds-t1-x-123");
        let v: Value = serde_yaml::from_str("{ 'Fn::GetAtt': [Q, Arn] }").unwrap();
        assert_eq!(s.string(&v).unwrap(), "arn:q");
        let v: Value = serde_yaml::from_str("!Ref Q").unwrap();
        assert_eq!(s.string(&v).unwrap(), "http://q");
        let v: Value = serde_yaml::from_str("!Not [!Equals [!Ref Stage, '']]").unwrap();
        assert_eq!(s.eval(&v).unwrap(), Value::Bool(true));
    }

    #[test]
    fn if_picks_the_branch_of_its_condition_and_no_value_is_null() {
        let mut s = scope();
        s.params.insert("Url".into(), String::new());
        s.conditions.insert(
            "HasUrl".into(),
            serde_yaml::from_str("!Not [!Equals [!Ref Url, \"\"]]").unwrap(),
        );
        let v: Value = serde_yaml::from_str("!If [HasUrl, !Ref Url, !Ref AWS::NoValue]").unwrap();
        assert_eq!(s.eval(&v).unwrap(), Value::Null);
        s.params.insert("Url".into(), "http://10.0.0.1:4566".into());
        assert_eq!(s.string(&v).unwrap(), "http://10.0.0.1:4566");
        let unknown: Value = serde_yaml::from_str("!If [Nope, a, b]").unwrap();
        assert!(s.eval(&unknown).is_err());
    }

    #[test]
    fn unknown_names_and_functions_are_errors_not_guesses() {
        let s = scope();
        for y in [
            "!Ref Nope",
            "!GetAtt Q.QueueName",
            "!Base64 x",
            "!Sub ${Nope}",
        ] {
            let v: Value = serde_yaml::from_str(y).unwrap();
            assert!(s.eval(&v).is_err(), "{y} evaluated");
        }
    }
}
