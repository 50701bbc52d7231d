"""What a job may ask for, checked before Keras sees it: the model allow-list (`allowlist`), the one
walk of a model JSON that every model check and routing read (`summary`), the parameter estimate
(`estimate`, over `shapes`), the rewrite of tf.keras 2.x JSON (`keras2`), dataset references and array
names (`datasets`), and the whole job (`vet`). The API runs these at submit, the worker again before
it builds anything."""
