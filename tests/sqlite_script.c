/* A real SQL script through Debian's arm64 libsqlite3 (dynamically linked): tables, a recursive
   CTE, an index, a join, aggregates, update and delete. Built by tests/test_real_programs.py. */
#include <stdio.h>
#include <sqlite3.h>
static int row(void *u, int n, char **v, char **c) { (void)u; (void)c; for (int i = 0; i < n; i++) printf("%s%s", i ? "|" : "", v[i] ? v[i] : "NULL"); printf("\n"); return 0; }
int main(int argc, char **argv) {
    sqlite3 *db; char *err = 0;
    if (sqlite3_open(argc > 1 ? argv[1] : ":memory:", &db)) return 2;
    const char *sql =
        "create table t(id integer primary key, name text, qty int);"
        "create table price(name text primary key, cents int);"
        "with recursive n(i) as (select 1 union all select i+1 from n where i<500) insert into t(name, qty) select 'item'||(i%7), i from n;"
        "insert into price values('item0',5),('item1',7),('item2',11),('item3',13),('item4',17),('item5',19),('item6',23);"
        "create index ti on t(name);"
        "select name, count(*), sum(qty) from t group by name order by name;"
        "select t.name, sum(t.qty*p.cents) as total from t join price p using(name) group by t.name order by total desc limit 3;"
        "update t set qty = qty*2 where id % 3 = 0; delete from t where id > 490;"
        "select count(*), sum(qty), max(length(name)) from t;";
    if (sqlite3_exec(db, sql, row, 0, &err)) { printf("error: %s\n", err); return 1; }
    sqlite3_close(db);
    return 0;
}
