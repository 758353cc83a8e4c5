"""What the station's and the portal's web pages share: languages (i18n), page
rendering (pages), request limits (limits), the public verification page (verify),
its templates, the style sheet and the shared catalogue."""
