print("aiim-bench: see Benchmarks/README.md")
