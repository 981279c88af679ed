//! Readable descriptions of component types, for `twig inspect`, error
//! messages and the WAVE value interface.

use wasmtime_environ::component::{
    ComponentTypes, InterfaceType, TypeDef, TypeFuncIndex, TypeResourceTable,
};

/// A function's parameter and result types, rendered in WIT syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncSig {
    pub params: Vec<(String, String)>,
    pub results: Vec<String>,
}

impl std::fmt::Display for FuncSig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "func(")?;
        for (i, (n, t)) in self.params.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{n}: {t}")?;
        }
        write!(f, ")")?;
        match self.results.len() {
            0 => Ok(()),
            1 => write!(f, " -> {}", self.results[0]),
            _ => write!(f, " -> ({})", self.results.join(", ")),
        }
    }
}

pub(crate) fn func_sig(types: &ComponentTypes, ty: TypeFuncIndex) -> FuncSig {
    let f = &types[ty];
    let params = f
        .param_names
        .iter()
        .zip(types[f.params].types.iter())
        .map(|(n, t)| (n.clone(), wit(types, t)))
        .collect();
    let results = types[f.results]
        .types
        .iter()
        .map(|t| wit(types, t))
        .collect();
    FuncSig { params, results }
}

pub(crate) fn def_kind(def: &TypeDef) -> &'static str {
    match def {
        TypeDef::Component(_) => "component",
        TypeDef::ComponentInstance(_) => "instance",
        TypeDef::ComponentFunc(_) => "func",
        TypeDef::Interface(_) => "type",
        TypeDef::Module(_) => "module",
        TypeDef::CoreFunc(_) => "core func",
        TypeDef::Resource(_) => "resource",
    }
}

/// Renders a type in WIT syntax (anonymous structural types are spelled
/// out, since names of records and variants are not kept by the binary's
/// flattened type information).
pub(crate) fn wit(types: &ComponentTypes, ty: &InterfaceType) -> String {
    match ty {
        InterfaceType::Bool => "bool".into(),
        InterfaceType::S8 => "s8".into(),
        InterfaceType::U8 => "u8".into(),
        InterfaceType::S16 => "s16".into(),
        InterfaceType::U16 => "u16".into(),
        InterfaceType::S32 => "s32".into(),
        InterfaceType::U32 => "u32".into(),
        InterfaceType::S64 => "s64".into(),
        InterfaceType::U64 => "u64".into(),
        InterfaceType::Float32 => "f32".into(),
        InterfaceType::Float64 => "f64".into(),
        InterfaceType::Char => "char".into(),
        InterfaceType::String => "string".into(),
        InterfaceType::List(i) => format!("list<{}>", wit(types, &types[*i].element)),
        InterfaceType::Record(i) => {
            let fields: Vec<String> = types[*i]
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.name, wit(types, &f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        InterfaceType::Tuple(i) => {
            let ts: Vec<String> = types[*i].types.iter().map(|t| wit(types, t)).collect();
            format!("tuple<{}>", ts.join(", "))
        }
        InterfaceType::Variant(i) => {
            let cases: Vec<String> = types[*i]
                .cases
                .iter()
                .map(|(n, t)| match t {
                    Some(t) => format!("{n}({})", wit(types, t)),
                    None => n.clone(),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        InterfaceType::Enum(i) => {
            let names: Vec<&str> = types[*i].names.iter().map(|s| s.as_str()).collect();
            format!("enum {{ {} }}", names.join(", "))
        }
        InterfaceType::Flags(i) => {
            let names: Vec<&str> = types[*i].names.iter().map(|s| s.as_str()).collect();
            format!("flags {{ {} }}", names.join(", "))
        }
        InterfaceType::Option(i) => format!("option<{}>", wit(types, &types[*i].ty)),
        InterfaceType::Result(i) => {
            let r = &types[*i];
            match (&r.ok, &r.err) {
                (None, None) => "result".into(),
                (Some(o), None) => format!("result<{}>", wit(types, o)),
                (None, Some(e)) => format!("result<_, {}>", wit(types, e)),
                (Some(o), Some(e)) => format!("result<{}, {}>", wit(types, o), wit(types, e)),
            }
        }
        InterfaceType::Own(t) => format!("own<{}>", resource_name(types, *t)),
        InterfaceType::Borrow(t) => format!("borrow<{}>", resource_name(types, *t)),
        InterfaceType::Map(i) => format!(
            "map<{}, {}>",
            wit(types, &types[*i].key),
            wit(types, &types[*i].value)
        ),
        InterfaceType::Future(_) => "future".into(),
        InterfaceType::Stream(_) => "stream".into(),
        InterfaceType::ErrorContext(_) => "error-context".into(),
        InterfaceType::FixedLengthList(i) => format!(
            "list<{}, {}>",
            wit(types, &types[*i].element),
            types[*i].size
        ),
    }
}

fn resource_name(
    types: &ComponentTypes,
    t: wasmtime_environ::component::TypeResourceTableIndex,
) -> String {
    match &types[t] {
        TypeResourceTable::Concrete { ty, .. } => format!("resource#{}", ty.as_u32()),
        TypeResourceTable::Abstract(a) => format!("resource#abstract{}", a.as_u32()),
    }
}

/// `own<resource#7>` → `own<counter>`: each `resource#N` in a rendered
/// type whose index has a name in `names` (unnamed ones stay as they are).
pub(crate) fn name_resources(ty: &str, names: &std::collections::HashMap<u32, String>) -> String {
    const TAG: &str = "resource#";
    let mut out = String::with_capacity(ty.len());
    let mut rest = ty;
    while let Some(at) = rest.find(TAG) {
        out.push_str(&rest[..at]);
        let after = &rest[at + TAG.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits]
            .parse::<u32>()
            .ok()
            .and_then(|n| names.get(&n))
        {
            Some(name) => out.push_str(name),
            None => out.push_str(&rest[at..at + TAG.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod resource_name_tests {
    use super::name_resources;

    #[test]
    fn indices_with_names_are_replaced_and_others_kept() {
        let names = [(7, "counter".to_string()), (1, "blob".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            name_resources("result<own<resource#7>, borrow<resource#1>>", &names),
            "result<own<counter>, borrow<blob>>"
        );
        // resource#70 is not resource#7.
        assert_eq!(
            name_resources("own<resource#70>", &names),
            "own<resource#70>"
        );
        assert_eq!(
            name_resources("resource#abstract3", &names),
            "resource#abstract3"
        );
    }
}
