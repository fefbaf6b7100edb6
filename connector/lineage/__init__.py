"""The lineage picture: an output file (or a live crawl) drawn as one offline HTML page.

graph.py turns proposals into nodes and edges (pure); page.py writes the page (static/ holds its
script, style and the vendored graph library)."""
