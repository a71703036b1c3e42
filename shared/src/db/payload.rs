//! How an event's JSON text is bound to a `json` or `jsonb` parameter: as
//! it is, without parsing it back into a `Value` first.

use crate::domain::events::EventPayload;
use bytes::BytesMut;
use std::error::Error;
use tokio_postgres::types::{IsNull, ToSql, Type, accepts, to_sql_checked};

/// The binary format of `jsonb` that PostgreSQL reads: a version byte.
const JSONB_VERSION: u8 = 1;

impl ToSql for EventPayload {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[JSONB_VERSION]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}
