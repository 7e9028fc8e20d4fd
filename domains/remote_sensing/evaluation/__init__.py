"""Remote sensing (SkySense): SAR + optical time series on GeoTIFFs."""
