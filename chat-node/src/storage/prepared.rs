//! Read queries that diesel's DSL cannot express (index hints, `WITH`) but that should
//! still stay prepared on each pooled connection: diesel never caches a `sql_query`, so
//! each call would prepare, execute and close, two round trips instead of one.

use diesel::mysql::Mysql;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Untyped};
use diesel::QueryResult;

/// Fixed SQL with `?` placeholders and integer arguments. Its shape never changes, so
/// the connection's statement cache keys it by its SQL and keeps it prepared. Only for
/// SQL whose text is fixed: each distinct text is one more statement held per connection.
pub struct Prepared {
    sql: &'static str,
    args: Vec<i64>,
}

impl Prepared {
    pub fn new(sql: &'static str, args: Vec<i64>) -> Self {
        debug_assert_eq!(sql.matches('?').count(), args.len(), "one argument per `?`");
        Self { sql, args }
    }
}

impl QueryFragment<Mysql> for Prepared {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        // Each bound argument writes its own `?`.
        let mut pieces = self.sql.split('?');
        if let Some(first) = pieces.next() {
            out.push_sql(first);
        }
        for (piece, arg) in pieces.zip(&self.args) {
            out.push_bind_param::<BigInt, i64>(arg)?;
            out.push_sql(piece);
        }
        Ok(())
    }
}

impl QueryId for Prepared {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;

    use super::*;

    #[test]
    fn the_sql_is_kept_and_each_argument_takes_its_placeholder() {
        let q = Prepared::new(
            "SELECT a FROM t WHERE b = ? AND c < ? LIMIT ?",
            vec![1, 2, 3],
        );
        let shown = debug_query::<Mysql, _>(&q).to_string();
        assert_eq!(
            shown,
            "SELECT a FROM t WHERE b = ? AND c < ? LIMIT ? -- binds: [1, 2, 3]"
        );
    }

    #[test]
    fn it_may_be_cached_where_sql_query_may_not() {
        let q = Prepared::new("SELECT 1 WHERE 1 = ?", vec![1]);
        assert_eq!(q.is_safe_to_cache_prepared(&Mysql).ok(), Some(true));
        let raw = diesel::sql_query("SELECT 1");
        assert_eq!(raw.is_safe_to_cache_prepared(&Mysql).ok(), Some(false));
    }
}
