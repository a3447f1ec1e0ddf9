"""The returning-customer view: RFM segments, lifecycle, NPS feedback and the overview
figures (``insights``)."""
