"""The MongoDB adapters of the core's ports (services.ports), and the only code of services/
that imports the driver: the thread store and its write protocol, the view catalog, the key
store, the schema and its migrations, and the composition root that connects them. FerretDB
speaks the same protocol (docs/ferretdb.md says where it differs)."""
