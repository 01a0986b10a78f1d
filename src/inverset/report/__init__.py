"""Pictures of results: image grids, bar charts of inputs, convergence plots, histograms, HTML."""
