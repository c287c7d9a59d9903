//! The SAML replay cache: each assertion id is accepted once, until it expires.

use chrono::{DateTime, Utc};

use crate::store::{Store, StoreError, now_text, query_failed};

impl Store {
    /// Records an assertion id until it expires; false when it was seen before (a replay).
    pub async fn first_use_of_assertion(
        &self,
        id: &str,
        valid_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM saml_assertions WHERE expires_at < ?")
            .bind(now_text())
            .execute(self.pool())
            .await
            .map_err(query_failed("expire assertion ids"))?;
        let inserted = sqlx::query(
            "INSERT INTO saml_assertions (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(crate::store::time_text(&valid_until))
        .execute(self.pool())
        .await
        .map_err(query_failed("record assertion id"))?
        .rows_affected();
        Ok(inserted == 1)
    }
}
