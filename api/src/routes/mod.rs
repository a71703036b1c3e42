//! HTTP routes: the OpenAPI-described orders resource, health and metrics.

/// The raw-value methods of `Type` for a wrapper that is its own raw value.
macro_rules! raw_self {
    () => {
        fn as_raw_value(&self) -> Option<&Self::RawValueType> {
            Some(self)
        }

        fn raw_element_iter<'a>(
            &'a self,
        ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
            Box::new(std::iter::once(self))
        }
    };
}

pub mod health;
pub mod json_body;
#[cfg(test)]
mod json_parity;
pub mod lenient;
pub mod live;
pub mod orders;
pub mod pattern;
pub mod wire;
