"""See agile_ir_plugin.basicsr: modules here register themselves on import."""
