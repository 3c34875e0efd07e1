from tests.helpers import make_shop, post_webhook


def test_healthz_reports_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "ok"}


def test_customers_create_is_recorded_and_processed(client, db, rt, redis):
    from tests.conftest import run_worker

    make_shop(db, rt.cipher)
    response = post_webhook(client, "customers/create", "demo.myshopify.com", {"id": 706405506930370084})
    assert response.status_code == 200
    run_worker(redis)
    from app.models import Customer, WebhookEvent

    assert db.query(Customer).count() == 1
    assert db.query(WebhookEvent).one().status == "processed"
