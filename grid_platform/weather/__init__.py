"""Hourly weather for the risk model: DWD test reference years, an Open-Meteo-style forecast
client and the plausibility rules both go through. Pure Python, no Dagster.

Every source yields the same hourly frame (``quality.HOURLY_COLUMNS``): one row per weather
point and UTC hour with wind speed, gust (m/s) and air temperature (°C), the point's position
and elevation, the source, and flags saying which values were derived, interpolated or
rejected.
"""
