//! The system procedures clients call by RPC: `sp_executesql` (ProcID 10),
//! `sp_prepare` (11), `sp_execute` (12), `sp_prepexec` (13) and `sp_unprepare` (15),
//! by id or by name. ODBC drivers (FreeTDS, msodbcsql) prepare parameterised
//! statements with `sp_prepexec` and run them again with `sp_execute`; prepared
//! statements live for the session.

use super::errors::ErrorSpec;
use super::rpc::{declared_names, Param, Proc, RpcRequest};
use super::sql::Value;
use super::types::SqlType;
use std::collections::HashMap;

/// An output parameter to send back as RETURNVALUE (the prepared-statement handle).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReturnValue {
    pub ordinal: u16,
    pub name: String,
    pub value: Value,
    pub ty: SqlType,
}

/// What an RPC asks the session to do.
#[derive(Debug, PartialEq)]
pub(crate) enum Call {
    /// Run a statement with these parameters.
    Run { stmt: String, params: Vec<Param> },
    /// Nothing to run (sp_prepare, sp_unprepare); answer with the return values.
    Nothing,
}

/// A session's prepared statements and the output parameters of the current RPC.
#[derive(Debug, Default)]
pub(crate) struct ProcState {
    prepared: HashMap<i32, (String, String)>,
    next_handle: i32,
    returns: Vec<ReturnValue>,
}

/// The system procedures the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    ExecuteSql,
    Prepare,
    Execute,
    PrepExec,
    Unprepare,
}

fn known(p: &Proc) -> Option<Known> {
    match p {
        Proc::Id(10) => Some(Known::ExecuteSql),
        Proc::Id(11) => Some(Known::Prepare),
        Proc::Id(12) => Some(Known::Execute),
        Proc::Id(13) => Some(Known::PrepExec),
        Proc::Id(15) => Some(Known::Unprepare),
        Proc::Id(_) => None,
        Proc::Name(n) => {
            let n = n.to_ascii_lowercase();
            let n = n
                .trim_start_matches("master.")
                .trim_start_matches("sys.")
                .trim_start_matches("dbo.")
                .trim_start_matches('.');
            match n {
                "sp_executesql" => Some(Known::ExecuteSql),
                "sp_prepare" => Some(Known::Prepare),
                "sp_execute" => Some(Known::Execute),
                "sp_prepexec" => Some(Known::PrepExec),
                "sp_unprepare" => Some(Known::Unprepare),
                _ => None,
            }
        }
    }
}

fn text_param(params: &[Param], i: usize, what: &str) -> Result<String, ErrorSpec> {
    match params.get(i).map(|p| &p.value) {
        Some(Value::Text(s)) => Ok(s.clone()),
        Some(Value::Null) | None if what == "@params" => Ok(String::new()),
        _ => Err(ErrorSpec::new(
            214,
            16,
            format!("Procedure expects parameter '{what}' of type 'ntext/nchar/nvarchar'."),
        )),
    }
}

fn handle_param(params: &[Param], i: usize) -> Result<i32, ErrorSpec> {
    match params.get(i).map(|p| &p.value) {
        Some(Value::Int(h)) => i32::try_from(*h).map_err(|_| unknown_handle(*h)),
        _ => Err(ErrorSpec::new(
            201,
            16,
            "Procedure or function 'sp_execute' expects parameter '@handle', which was not supplied.",
        )),
    }
}

fn unknown_handle(h: i64) -> ErrorSpec {
    ErrorSpec::new(
        8179,
        16,
        format!("Could not find prepared statement with handle {h}."),
    )
}

/// Names unnamed values after the declaration and adds the `@` prefix.
fn name_values(values: Vec<Param>, decl: &str) -> Vec<Param> {
    let declared = declared_names(decl);
    values
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            if p.name.is_empty() {
                p.name = declared.get(i).cloned().unwrap_or_default();
            }
            if !p.name.starts_with('@') && !p.name.is_empty() {
                p.name.insert(0, '@');
            }
            p
        })
        .collect()
}

impl ProcState {
    fn register(&mut self, stmt: String, decl: String, params: &[Param]) -> i32 {
        self.next_handle += 1;
        let h = self.next_handle;
        self.prepared.insert(h, (stmt, decl));
        let name = params.first().map(|p| p.name.clone()).unwrap_or_default();
        self.returns.push(ReturnValue {
            ordinal: 0,
            name,
            value: Value::Int(h as i64),
            ty: SqlType::Int,
        });
        h
    }

    /// Resolves an RPC to what to run; an error for an unknown procedure (2812) or
    /// bad arguments.
    pub fn resolve(&mut self, req: RpcRequest) -> Result<Call, ErrorSpec> {
        self.returns.clear();
        let Some(which) = known(&req.proc) else {
            return Err(ErrorSpec::new(
                2812,
                16,
                format!("Could not find stored procedure '{}'.", req.proc.display()),
            ));
        };
        let params = req.params;
        match which {
            Known::ExecuteSql => {
                let stmt = text_param(&params, 0, "@statement")?;
                let decl = text_param(&params, 1, "@params")?;
                let values = params.into_iter().skip(2).collect();
                Ok(Call::Run {
                    stmt,
                    params: name_values(values, &decl),
                })
            }
            Known::PrepExec | Known::Prepare => {
                // @handle OUTPUT, @params, @stmt [, values… | @options]
                let decl = text_param(&params, 1, "@params")?;
                let stmt = text_param(&params, 2, "@stmt")?;
                self.register(stmt.clone(), decl.clone(), &params);
                if which == Known::Prepare {
                    return Ok(Call::Nothing);
                }
                let values = params.into_iter().skip(3).collect();
                Ok(Call::Run {
                    stmt,
                    params: name_values(values, &decl),
                })
            }
            Known::Execute => {
                let h = handle_param(&params, 0)?;
                let (stmt, decl) = self
                    .prepared
                    .get(&h)
                    .cloned()
                    .ok_or_else(|| unknown_handle(h as i64))?;
                let values = params.into_iter().skip(1).collect();
                Ok(Call::Run {
                    stmt,
                    params: name_values(values, &decl),
                })
            }
            Known::Unprepare => {
                let h = handle_param(&params, 0)?;
                self.prepared.remove(&h);
                Ok(Call::Nothing)
            }
        }
    }

    /// The output parameters of the current RPC (sent before its DONEPROC).
    pub fn take_returns(&mut self) -> Vec<ReturnValue> {
        std::mem::take(&mut self.returns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, value: Value) -> Param {
        Param {
            name: name.into(),
            value,
            ty: SqlType::Int,
        }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn prepexec_then_execute_then_unprepare() {
        let mut st = ProcState::default();
        let call = st
            .resolve(RpcRequest {
                proc: Proc::Id(13),
                params: vec![
                    p("@handle", Value::Null),
                    p("", text("@P1 int")),
                    p("", text("SELECT @P1")),
                    p("", Value::Int(5)),
                ],
            })
            .unwrap();
        assert_eq!(
            call,
            Call::Run {
                stmt: "SELECT @P1".into(),
                params: vec![p("@P1", Value::Int(5))]
            }
        );
        let ret = st.take_returns();
        assert_eq!(ret.len(), 1);
        assert_eq!(ret[0].name, "@handle");
        let h = ret[0].value.clone();
        let call = st
            .resolve(RpcRequest {
                proc: Proc::Name("sp_execute".into()),
                params: vec![p("", h.clone()), p("", Value::Int(6))],
            })
            .unwrap();
        assert_eq!(
            call,
            Call::Run {
                stmt: "SELECT @P1".into(),
                params: vec![p("@P1", Value::Int(6))]
            }
        );
        assert_eq!(
            st.resolve(RpcRequest {
                proc: Proc::Id(15),
                params: vec![p("", h.clone())],
            }),
            Ok(Call::Nothing)
        );
        let err = st
            .resolve(RpcRequest {
                proc: Proc::Id(12),
                params: vec![p("", h)],
            })
            .unwrap_err();
        assert_eq!(err.number, 8179);
    }

    #[test]
    fn unknown_procedures_are_2812() {
        let mut st = ProcState::default();
        let err = st
            .resolve(RpcRequest {
                proc: Proc::Name("sp_who".into()),
                params: vec![],
            })
            .unwrap_err();
        assert_eq!(err.number, 2812);
        assert_eq!(err.message, "Could not find stored procedure 'sp_who'.");
    }
}
