from jaxdqn.runtime import fast_cpu_compile

fast_cpu_compile()  # before the first JAX computation: halves XLA:CPU compile time of the suite
