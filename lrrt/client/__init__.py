"""The client side: the HTTP `Client` (`api`), the result it returns (`result`), the in-process
`lr_find` (`local`), the progress bar both show (`progress_bar`) and the Keras code a result
prints (`keras_code`). `from lrrt import Client, lr_find` is the short way in."""
