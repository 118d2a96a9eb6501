# An app with its database: the repository's Node.js app (see ../nodejs) and PostgreSQL.
# Convoy deploys `db` first and gives `app` the connection details (DATABASE_URL, DATABASE_HOST, ...).
{ pkgs ? import <nixpkgs> { }
, src
, postgresql ? pkgs.postgresql_16
, port ? "3000"
}:
let
  convoy = (import ../../lib).withPkgs pkgs;
in
{
  app = (import ../nodejs { inherit pkgs src port; }).app;

  db = convoy.component {
    name = "postgres";
    package = postgresql;
    start = convoy.startScript {
      runtimeInputs = [ postgresql pkgs.coreutils ];
      text = ''
        : "''${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
        export PGDATA="''${PGDATA:-/data/postgres}"
        user="''${POSTGRES_USER:-convoy}"
        database="''${POSTGRES_DB:-convoy}"
        # First start on an empty volume: create the cluster, the user and the database.
        if [ ! -s "$PGDATA/PG_VERSION" ]; then
          mkdir -p "$PGDATA"
          chmod 0700 "$PGDATA"
          pwfile="$(mktemp)"
          printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
          initdb --username="$user" --pwfile="$pwfile" --auth=scram-sha-256 --encoding=UTF8 -D "$PGDATA"
          rm -f "$pwfile"
          echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
          if [ "$database" != postgres ]; then
            echo "CREATE DATABASE \"$database\" OWNER \"$user\"" | postgres --single -D "$PGDATA" postgres
          fi
        fi
        exec postgres -D "$PGDATA" -c listen_addresses='*' -p "''${PORT:-5432}" -k /tmp
      '';
    };
  };
}
