import keras
import numpy as np
from lrrt import Client  # talks to a running lrrt (`lrrt standalone`); no Keras on its side
x = np.random.default_rng(0).normal(size=(2000, 20)).astype("float32")
y = (x[:, :5].sum(axis=1) > 0).astype("int64")  # a learnable 2-class problem
model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2, activation="softmax")])
found = Client().lr_find(model, x, y, optimizers=["sgd", "adam"], num_steps=150, batch_size=64)
print("recommended:", found)
found.plot("lr_find.png")
