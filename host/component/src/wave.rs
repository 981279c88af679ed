//! WAVE, the WebAssembly Value Encoding, for [`Val`]s.
//!
//! The CLI (`twig invoke`) and the tests write arguments and print results
//! in WAVE (`"text"`, `[1, 2]`, `{name: "x", size: some(3)}`, `ok(7)`), the
//! same syntax the wasmtime CLI uses, so values can be compared across
//! engines as text. Parsing needs the WIT type, which a [`WaveType`] carries
//! from the component's type information.

use std::borrow::Cow;
use std::sync::Arc;

use wasm_wave::wasm::{WasmType, WasmTypeKind, WasmValue, WasmValueError};
use wasmtime_environ::component::InterfaceType;

use crate::component::ComponentInner;
use crate::types::wit;
use crate::values::Val;

/// A component type, with the component it belongs to.
#[derive(Clone)]
pub struct WaveType {
    comp: Arc<ComponentInner>,
    ty: InterfaceType,
}

impl WaveType {
    fn with(&self, ty: InterfaceType) -> WaveType {
        WaveType {
            comp: self.comp.clone(),
            ty,
        }
    }

    /// The type in WIT syntax.
    pub fn wit(&self) -> String {
        wit(&self.comp.types, &self.ty)
    }
}

impl WasmType for WaveType {
    fn kind(&self) -> WasmTypeKind {
        match self.ty {
            InterfaceType::Bool => WasmTypeKind::Bool,
            InterfaceType::S8 => WasmTypeKind::S8,
            InterfaceType::U8 => WasmTypeKind::U8,
            InterfaceType::S16 => WasmTypeKind::S16,
            InterfaceType::U16 => WasmTypeKind::U16,
            InterfaceType::S32 => WasmTypeKind::S32,
            InterfaceType::U32 => WasmTypeKind::U32,
            InterfaceType::S64 => WasmTypeKind::S64,
            InterfaceType::U64 => WasmTypeKind::U64,
            InterfaceType::Float32 => WasmTypeKind::F32,
            InterfaceType::Float64 => WasmTypeKind::F64,
            InterfaceType::Char => WasmTypeKind::Char,
            InterfaceType::String => WasmTypeKind::String,
            InterfaceType::List(_) => WasmTypeKind::List,
            InterfaceType::Record(_) => WasmTypeKind::Record,
            InterfaceType::Tuple(_) => WasmTypeKind::Tuple,
            InterfaceType::Variant(_) => WasmTypeKind::Variant,
            InterfaceType::Enum(_) => WasmTypeKind::Enum,
            InterfaceType::Option(_) => WasmTypeKind::Option,
            InterfaceType::Result(_) => WasmTypeKind::Result,
            InterfaceType::Flags(_) => WasmTypeKind::Flags,
            _ => WasmTypeKind::Unsupported,
        }
    }

    fn list_element_type(&self) -> Option<Self> {
        match self.ty {
            InterfaceType::List(i) => Some(self.with(self.comp.types[i].element)),
            _ => None,
        }
    }

    fn record_fields(&self) -> Box<dyn Iterator<Item = (Cow<'_, str>, Self)> + '_> {
        match self.ty {
            InterfaceType::Record(i) => Box::new(
                self.comp.types[i]
                    .fields
                    .iter()
                    .map(|f| (Cow::Borrowed(f.name.as_str()), self.with(f.ty))),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn tuple_element_types(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        match self.ty {
            InterfaceType::Tuple(i) => {
                Box::new(self.comp.types[i].types.iter().map(|t| self.with(*t)))
            }
            _ => Box::new(std::iter::empty()),
        }
    }

    fn variant_cases(&self) -> Box<dyn Iterator<Item = (Cow<'_, str>, Option<Self>)> + '_> {
        match self.ty {
            InterfaceType::Variant(i) => Box::new(
                self.comp.types[i]
                    .cases
                    .iter()
                    .map(|(n, t)| (Cow::Borrowed(n.as_str()), t.map(|t| self.with(t)))),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn enum_cases(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        match self.ty {
            InterfaceType::Enum(i) => Box::new(
                self.comp.types[i]
                    .names
                    .iter()
                    .map(|n| Cow::Borrowed(n.as_str())),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn option_some_type(&self) -> Option<Self> {
        match self.ty {
            InterfaceType::Option(i) => Some(self.with(self.comp.types[i].ty)),
            _ => None,
        }
    }

    fn result_types(&self) -> Option<(Option<Self>, Option<Self>)> {
        match self.ty {
            InterfaceType::Result(i) => {
                let r = &self.comp.types[i];
                Some((r.ok.map(|t| self.with(t)), r.err.map(|t| self.with(t))))
            }
            _ => None,
        }
    }

    fn flags_names(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        match self.ty {
            InterfaceType::Flags(i) => Box::new(
                self.comp.types[i]
                    .names
                    .iter()
                    .map(|n| Cow::Borrowed(n.as_str())),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }
}

fn unknown(what: &str, name: &str) -> WasmValueError {
    WasmValueError::Other(format!("unknown {what} `{name}`"))
}

impl WasmValue for Val {
    type Type = WaveType;

    fn kind(&self) -> WasmTypeKind {
        match self {
            Val::Bool(_) => WasmTypeKind::Bool,
            Val::S8(_) => WasmTypeKind::S8,
            Val::U8(_) => WasmTypeKind::U8,
            Val::S16(_) => WasmTypeKind::S16,
            Val::U16(_) => WasmTypeKind::U16,
            Val::S32(_) => WasmTypeKind::S32,
            Val::U32(_) => WasmTypeKind::U32,
            Val::S64(_) => WasmTypeKind::S64,
            Val::U64(_) => WasmTypeKind::U64,
            Val::Float32(_) => WasmTypeKind::F32,
            Val::Float64(_) => WasmTypeKind::F64,
            Val::Char(_) => WasmTypeKind::Char,
            Val::String(_) => WasmTypeKind::String,
            Val::List(_) | Val::Bytes(_) => WasmTypeKind::List,
            Val::Record(_) => WasmTypeKind::Record,
            Val::Tuple(_) => WasmTypeKind::Tuple,
            Val::Variant(..) => WasmTypeKind::Variant,
            Val::Enum(_) => WasmTypeKind::Enum,
            Val::Option(_) => WasmTypeKind::Option,
            Val::Result(_) => WasmTypeKind::Result,
            Val::Flags(_) => WasmTypeKind::Flags,
            Val::Resource(_) => WasmTypeKind::Unsupported,
        }
    }

    fn make_bool(v: bool) -> Self {
        Val::Bool(v)
    }
    fn make_s8(v: i8) -> Self {
        Val::S8(v)
    }
    fn make_s16(v: i16) -> Self {
        Val::S16(v)
    }
    fn make_s32(v: i32) -> Self {
        Val::S32(v)
    }
    fn make_s64(v: i64) -> Self {
        Val::S64(v)
    }
    fn make_u8(v: u8) -> Self {
        Val::U8(v)
    }
    fn make_u16(v: u16) -> Self {
        Val::U16(v)
    }
    fn make_u32(v: u32) -> Self {
        Val::U32(v)
    }
    fn make_u64(v: u64) -> Self {
        Val::U64(v)
    }
    fn make_f32(v: f32) -> Self {
        Val::Float32(v)
    }
    fn make_f64(v: f64) -> Self {
        Val::Float64(v)
    }
    fn make_char(v: char) -> Self {
        Val::Char(v)
    }
    fn make_string(v: Cow<str>) -> Self {
        Val::String(v.into_owned())
    }

    fn make_list(
        ty: &WaveType,
        vals: impl IntoIterator<Item = Self>,
    ) -> Result<Self, WasmValueError> {
        // A `list<u8>` is parsed into the byte form the engine lifts.
        if matches!(
            ty.list_element_type().map(|e| e.ty),
            Some(InterfaceType::U8)
        ) {
            return vals
                .into_iter()
                .map(|v| match v {
                    Val::U8(b) => Ok(b),
                    other => Err(WasmValueError::WrongValueType {
                        ty: "u8".into(),
                        val: to_wave(&other),
                    }),
                })
                .collect::<Result<Vec<u8>, _>>()
                .map(Val::Bytes);
        }
        Ok(Val::List(vals.into_iter().collect()))
    }

    fn make_record<'a>(
        ty: &WaveType,
        fields: impl IntoIterator<Item = (&'a str, Self)>,
    ) -> Result<Self, WasmValueError> {
        let mut given: Vec<(&str, Val)> = fields.into_iter().collect();
        let mut out = Vec::new();
        for (name, _) in ty.record_fields() {
            let pos = given
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| WasmValueError::MissingField(name.to_string()))?;
            out.push((name.to_string(), given.swap_remove(pos).1));
        }
        if let Some((extra, _)) = given.first() {
            return Err(WasmValueError::UnknownField(extra.to_string()));
        }
        Ok(Val::Record(out))
    }

    fn make_tuple(
        _ty: &WaveType,
        vals: impl IntoIterator<Item = Self>,
    ) -> Result<Self, WasmValueError> {
        Ok(Val::Tuple(vals.into_iter().collect()))
    }

    fn make_variant(ty: &WaveType, case: &str, val: Option<Self>) -> Result<Self, WasmValueError> {
        let payload_ty = ty
            .variant_cases()
            .find(|(n, _)| n == case)
            .map(|(_, t)| t.is_some())
            .ok_or_else(|| WasmValueError::UnknownCase(case.to_string()))?;
        match (payload_ty, &val) {
            (true, None) => Err(WasmValueError::MissingPayload(case.to_string())),
            (false, Some(_)) => Err(WasmValueError::UnexpectedPayload(case.to_string())),
            _ => Ok(Val::Variant(case.to_string(), val.map(Box::new))),
        }
    }

    fn make_enum(ty: &WaveType, case: &str) -> Result<Self, WasmValueError> {
        if !ty.enum_cases().any(|c| c == case) {
            return Err(WasmValueError::UnknownCase(case.to_string()));
        }
        Ok(Val::Enum(case.to_string()))
    }

    fn make_option(_ty: &WaveType, val: Option<Self>) -> Result<Self, WasmValueError> {
        Ok(Val::Option(val.map(Box::new)))
    }

    fn make_result(
        _ty: &WaveType,
        val: Result<Option<Self>, Option<Self>>,
    ) -> Result<Self, WasmValueError> {
        Ok(Val::Result(match val {
            Ok(v) => Ok(v.map(Box::new)),
            Err(e) => Err(e.map(Box::new)),
        }))
    }

    fn make_flags<'a>(
        ty: &WaveType,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, WasmValueError> {
        let given: Vec<&str> = names.into_iter().collect();
        let all: Vec<Cow<'_, str>> = ty.flags_names().collect();
        if let Some(bad) = given.iter().find(|g| !all.iter().any(|a| a == *g)) {
            return Err(unknown("flag", bad));
        }
        Ok(Val::Flags(
            all.iter()
                .filter(|a| given.contains(&a.as_ref()))
                .map(|a| a.to_string())
                .collect(),
        ))
    }

    fn unwrap_bool(&self) -> bool {
        matches!(self, Val::Bool(true))
    }
    fn unwrap_s8(&self) -> i8 {
        if let Val::S8(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_s16(&self) -> i16 {
        if let Val::S16(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_s32(&self) -> i32 {
        if let Val::S32(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_s64(&self) -> i64 {
        if let Val::S64(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_u8(&self) -> u8 {
        if let Val::U8(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_u16(&self) -> u16 {
        if let Val::U16(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_u32(&self) -> u32 {
        if let Val::U32(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_u64(&self) -> u64 {
        if let Val::U64(v) = self {
            *v
        } else {
            0
        }
    }
    fn unwrap_f32(&self) -> f32 {
        if let Val::Float32(v) = self {
            *v
        } else {
            0.0
        }
    }
    fn unwrap_f64(&self) -> f64 {
        if let Val::Float64(v) = self {
            *v
        } else {
            0.0
        }
    }
    fn unwrap_char(&self) -> char {
        if let Val::Char(v) = self {
            *v
        } else {
            '\0'
        }
    }
    fn unwrap_string(&self) -> Cow<'_, str> {
        if let Val::String(s) = self {
            Cow::Borrowed(s)
        } else {
            Cow::Borrowed("")
        }
    }
    fn unwrap_list(&self) -> Box<dyn Iterator<Item = Cow<'_, Self>> + '_> {
        match self {
            Val::List(v) => Box::new(v.iter().map(Cow::Borrowed)),
            Val::Bytes(b) => Box::new(b.iter().map(|x| Cow::Owned(Val::U8(*x)))),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn unwrap_record(&self) -> Box<dyn Iterator<Item = (Cow<'_, str>, Cow<'_, Self>)> + '_> {
        match self {
            Val::Record(v) => Box::new(
                v.iter()
                    .map(|(n, v)| (Cow::Borrowed(n.as_str()), Cow::Borrowed(v))),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn unwrap_tuple(&self) -> Box<dyn Iterator<Item = Cow<'_, Self>> + '_> {
        match self {
            Val::Tuple(v) => Box::new(v.iter().map(Cow::Borrowed)),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn unwrap_variant(&self) -> (Cow<'_, str>, Option<Cow<'_, Self>>) {
        match self {
            Val::Variant(n, p) => (Cow::Borrowed(n.as_str()), p.as_deref().map(Cow::Borrowed)),
            _ => (Cow::Borrowed(""), None),
        }
    }
    fn unwrap_enum(&self) -> Cow<'_, str> {
        match self {
            Val::Enum(n) => Cow::Borrowed(n.as_str()),
            _ => Cow::Borrowed(""),
        }
    }
    fn unwrap_option(&self) -> Option<Cow<'_, Self>> {
        match self {
            Val::Option(v) => v.as_deref().map(Cow::Borrowed),
            _ => None,
        }
    }
    fn unwrap_result(&self) -> Result<Option<Cow<'_, Self>>, Option<Cow<'_, Self>>> {
        match self {
            Val::Result(Ok(v)) => Ok(v.as_deref().map(Cow::Borrowed)),
            Val::Result(Err(v)) => Err(v.as_deref().map(Cow::Borrowed)),
            _ => Ok(None),
        }
    }
    fn unwrap_flags(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        match self {
            Val::Flags(v) => Box::new(v.iter().map(|s| Cow::Borrowed(s.as_str()))),
            _ => Box::new(std::iter::empty()),
        }
    }
}

/// The types of a function's parameters or results.
#[derive(Clone)]
pub struct TypeList {
    comp: Arc<ComponentInner>,
    tys: Vec<InterfaceType>,
}

impl TypeList {
    pub(crate) fn new(comp: Arc<ComponentInner>, tys: Vec<InterfaceType>) -> TypeList {
        TypeList { comp, tys }
    }

    pub fn len(&self) -> usize {
        self.tys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tys.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<WaveType> {
        self.tys.get(i).map(|t| WaveType {
            comp: self.comp.clone(),
            ty: *t,
        })
    }

    /// Parses one WAVE text per parameter.
    pub fn parse(&self, args: &[&str]) -> Result<Vec<Val>, String> {
        if args.len() != self.tys.len() {
            return Err(format!(
                "expected {} arguments, got {}",
                self.tys.len(),
                args.len()
            ));
        }
        args.iter()
            .enumerate()
            .map(|(i, a)| {
                let ty = self.get(i).expect("index in range");
                wasm_wave::from_str::<Val>(&ty, a).map_err(|e| {
                    format!(
                        "argument {} (`{a}`) is not a valid {}: {e}",
                        i + 1,
                        ty.wit()
                    )
                })
            })
            .collect()
    }
}

/// Formats a value as WAVE text.
pub fn to_wave(v: &Val) -> String {
    match v {
        Val::Resource(r) => format!(
            "<resource {:?} rep={}{}>",
            r.ty,
            r.rep,
            if r.own { "" } else { " borrowed" }
        ),
        v => wasm_wave::to_string(v).unwrap_or_else(|e| format!("<unprintable: {e}>")),
    }
}

/// Parses WAVE text as a value of `ty`.
pub fn from_wave(ty: &WaveType, s: &str) -> Result<Val, String> {
    wasm_wave::from_str::<Val>(ty, s).map_err(|e| e.to_string())
}
