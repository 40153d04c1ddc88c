"""Tools a student may call: their schemas (registry), argument normalisation and fixture replay."""
