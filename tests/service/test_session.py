"""service/session.py: the API process's database engine."""


def test_the_api_pool_follows_its_setting(app, settings):
    # One connection per gunicorn thread and two spare (jobs/settings.py).
    assert app.extensions["gradtrace_engine"].pool.size() == settings.api_db_pool_size == 10
