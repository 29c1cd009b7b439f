"""The models: one small file per model on the contract of `base.Model`, registered by name in
`registry`; their hyper-parameters' shared part in `config` (light to import)."""
