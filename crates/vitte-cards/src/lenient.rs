//! Forgiving JSON field types for cards written by many different editors.
//!
//! Cards in the wild put `null` where a string belongs, numbers where a flag
//! belongs, a comma-separated string where a list belongs, or an object where
//! the spec says array. A field of the wrong shape is read as absent instead
//! of failing the import, and whatever is skipped is skipped with
//! [`IgnoredAny`], so memory stays proportional to the fields we keep rather
//! than to the whole document.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Implements the listed visitor methods, and `visit_unit` (JSON `null`),
/// by returning `Default::default()`: the value read as absent.
macro_rules! read_as_absent {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, _: $ty) -> Result<Self::Value, E> {
                Ok(Default::default())
            }
        )*
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A string; anything else reads as empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            read_as_absent!(
                visit_bool(bool),
                visit_i64(i64),
                visit_u64(u64),
                visit_f64(f64)
            );
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
                skip_seq(seq).map(|()| Text::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
                skip_map(map).map(|()| Text::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean; anything else reads as unset.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            read_as_absent!(
                visit_i64(i64),
                visit_u64(u64),
                visit_f64(f64),
                visit_str(&str)
            );
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Flag, A::Error> {
                skip_seq(seq).map(|()| Flag::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Flag, A::Error> {
                skip_map(map).map(|()| Flag::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A number; anything else reads as unset.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Number(pub Option<f64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            read_as_absent!(visit_bool(bool), visit_str(&str));
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(Some(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(Some(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Number, A::Error> {
                skip_seq(seq).map(|()| Number::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Number, A::Error> {
                skip_map(map).map(|()| Number::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl Number {
    /// The value rounded into `i32`, saturating; `default` when unset.
    pub fn to_i32_or(self, default: i32) -> i32 {
        // `as` saturates for floats, which is what an ordering key wants.
        self.0.map_or(default, |v| v.round() as i32)
    }
}

/// A list of strings. Non-string items are dropped; a single string is read
/// as a comma-separated list, which older editors wrote for keys and tags.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TextList(pub Vec<String>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            read_as_absent!(
                visit_bool(bool),
                visit_i64(i64),
                visit_u64(u64),
                visit_f64(f64)
            );
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextList, E> {
                Ok(TextList(v.split(',').map(str::to_owned).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextList, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(item)) = seq.next_element::<Text>()? {
                    out.push(item);
                }
                Ok(TextList(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TextList, A::Error> {
                skip_map(map).map(|()| TextList::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object read as `T`; anything else reads as absent.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<T>(pub Option<T>);

impl<T> Default for Object<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            read_as_absent!(
                visit_bool(bool),
                visit_i64(i64),
                visit_u64(u64),
                visit_f64(f64),
                visit_str(&str),
            );
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Object<T>, A::Error> {
                skip_seq(seq).map(|()| Object(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Object(Some(t)))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A list of objects read as `T`; items of another shape are dropped. An
/// object is accepted in place of the list and its values taken in order:
/// some editors store lorebook entries keyed by id.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList<T>(pub Vec<T>);

impl<T> Default for ObjectList<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ObjectList<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of objects")
            }
            read_as_absent!(
                visit_bool(bool),
                visit_i64(i64),
                visit_u64(u64),
                visit_f64(f64),
                visit_str(&str),
            );
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ObjectList<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Object<T>>()? {
                    out.extend(item.0);
                }
                Ok(ObjectList(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectList<T>, A::Error> {
                let mut out = Vec::new();
                while let Some((IgnoredAny, item)) = map.next_entry::<IgnoredAny, Object<T>>()? {
                    out.extend(item.0);
                }
                Ok(ObjectList(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct Probe {
        text: Text,
        flag: Flag,
        number: Number,
        list: TextList,
        object: Object<Inner>,
        objects: ObjectList<Inner>,
    }

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner {
        a: Text,
    }

    fn probe(json: &str) -> Probe {
        serde_json::from_str(json).expect("probe parses")
    }

    #[test]
    fn well_shaped_fields_are_read() {
        let p = probe(
            r#"{"text":"hi","flag":true,"number":-3.6,"list":["a","b"],
                "object":{"a":"x"},"objects":[{"a":"y"},{"a":"z"}]}"#,
        );
        assert_eq!(p.text.0, "hi");
        assert_eq!(p.flag.0, Some(true));
        assert_eq!(p.number.to_i32_or(0), -4);
        assert_eq!(p.list.0, ["a", "b"]);
        assert_eq!(p.object.0.map(|i| i.a.0), Some("x".to_owned()));
        let objects: Vec<String> = p.objects.0.into_iter().map(|i| i.a.0).collect();
        assert_eq!(objects, ["y", "z"]);
    }

    #[test]
    fn wrong_shapes_read_as_absent() {
        let p = probe(
            r#"{"text":{"deep":[1,2,{"x":null}]},"flag":"yes","number":"7",
                "list":{"k":"v"},"object":[1],"objects":"nope"}"#,
        );
        assert_eq!(p.text.0, "");
        assert_eq!(p.flag.0, None);
        assert_eq!(p.number.to_i32_or(42), 42);
        assert!(p.list.0.is_empty());
        assert!(p.object.0.is_none());
        assert!(p.objects.0.is_empty());

        let nulls = probe(r#"{"text":null,"flag":null,"number":null,"list":null,"object":null}"#);
        assert_eq!(nulls.text.0, "");
        assert_eq!(nulls.flag.0, None);
    }

    #[test]
    fn lists_tolerate_commas_mixed_items_and_keyed_objects() {
        let p =
            probe(r#"{"list":"cat, dog","objects":{"0":{"a":"first"},"1":7,"2":{"a":"second"}}}"#);
        assert_eq!(p.list.0, ["cat", " dog"]);
        let objects: Vec<String> = p.objects.0.into_iter().map(|i| i.a.0).collect();
        assert_eq!(objects, ["first", "second"]);
        let mixed = probe(r#"{"list":["a",1,null,"b",["c"]]}"#);
        assert_eq!(mixed.list.0, ["a", "", "", "b", ""]);
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(probe(r#"{"number":1e300}"#).number.to_i32_or(0), i32::MAX);
        assert_eq!(
            probe(r#"{"number":-99999999999}"#).number.to_i32_or(0),
            i32::MIN
        );
    }
}
