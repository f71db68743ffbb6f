"""Seed a fresh Tryton database with the business data erpsync's demo and tests use.

Run by tools/erpsync/tryton/build-template.sh after `trytond-admin --all`. It uses the
modules' own scenario helpers (company, fiscal year, chart of accounts), so the data is
what Tryton itself considers a valid set-up. Prints the REST application key on stdout.
"""
import datetime as dt
import secrets
import sys
from decimal import Decimal

import pycountry
from proteus import Model, config as proteus_config

from trytond.modules.account.tests.tools import (
    create_chart, create_fiscalyear, create_tax, get_accounts)
from trytond.modules.account_invoice.tests.tools import (
    create_payment_term, set_fiscalyear_invoice_sequences)
from trytond.modules.company.tests.tools import create_company, get_company

# SKU, name, list price, opening stock. The IPOD SKUs are the ones in Shopify's documented
# order examples (tests/fixtures), so those payloads map without aliases.
PRODUCTS = [
    ("IPOD2008GREEN", "iPod Nano 8GB green", "199.00", 100),
    ("IPOD2008RED", "iPod Nano 8GB red", "199.00", 100),
    ("IPOD2008BLACK", "iPod Nano 8GB black", "199.00", 100),
    ("IPOD2009BLACK", "iPod Nano 16GB black", "199.00", 50),
    ("BEAR-BOOTS", "Big Brown Bear Boots", "74.99", 40),
    ("WOOL-SOCKS", "Wool socks", "12.50", 500),
]
SHIPPING_SKU = "SHIPPING"
# The service product that carries refunds without goods coming back (goodwill, items the
# customer keeps) on return sales: config [erp] refund_sku.
REFUND_SKU = "REFUND"
# The untaxed service product for a tax-inclusive shop's rounding difference: [erp] rounding_sku.
ROUNDING_SKU = "ROUNDING"
# Service products the channels' charges are booked to: config [channels.charges].
CHARGES = [
    ("TIP", "Tip"),
    ("GIFT-CARD", "Gift card sold"),
    ("CUSTOM-ITEM", "Custom item"),
    ("DUTIES", "Duties"),
    ("FEES", "Fees"),
]

# Taxes the channels' tax lines map to (config: [[channels.tax_codes]] erp_tax = name).
TAXES = [
    ("UK VAT 20%", "0.20"),
    ("DE USt 19%", "0.19"),
    ("FR TVA 20%", "0.20"),
    ("US Sales Tax 6%", "0.06"),
    ("US-CA Sales Tax 7.5%", "0.075"),
    ("JP Consumption Tax 10%", "0.10"),
    ("BH VAT 10%", "0.10"),
]

# Carriers the shops' delivery methods map to ([channels.delivery_methods] = party name).
CARRIERS = [
    ("Royal Mail", "CARRIER-RM48", "Royal Mail Tracked 48"),
    ("DHL Express", "CARRIER-DHL", "DHL Express delivery"),
    ("UPS Ground", "CARRIER-UPS", "UPS Ground delivery"),
]

# The login that moves payments on over JSON-RPC (config [erp.rpc]).
PAYMENTS_USER = "erpsync-payments"
# Payment journals per gateway and currency, as config [channels.payments] names them: each
# has a clearing account the gateway's payouts empty; gift cards clear to their liability.
PAYMENT_JOURNALS = [
    # name, currency, clearing account
    ("Shopify Payments GBP", "GBP", "shopify"),
    ("Shopify Payments EUR", "EUR", "shopify"),
    ("Shopify Payments USD", "USD", "shopify"),
    ("Gift cards GBP", "GBP", "gift_cards"),
    ("Gift cards EUR", "EUR", "gift_cards"),
    ("Gift cards USD", "USD", "gift_cards"),
    ("Manual GBP", "GBP", "manual"),
    ("Manual EUR", "EUR", "manual"),
    ("Manual USD", "USD", "manual"),
]

CUSTOMERS = [
    # An existing ERP customer, stored with different case than the shop sends.
    ("Bob Norman", "Bob.Norman@mail.example.com", "Chestnut Street 92", "40202", "Louisville", "US"),
    ("Ada Lovelace", "ada@example.org", "12 St James's Square", "SW1Y 4JH", "London", "GB"),
]


def main(config_file, database):
    proteus_config.set_trytond(database=database, config_file=config_file)

    Country = Model.get('country.country')
    Country.save([Country(name=c.name, code=c.alpha_2, code3=c.alpha_3,
                code_numeric=c.numeric) for c in pycountry.countries])
    countries = {c.code: c for c in Country.find([])}

    Currency = Model.get('currency.currency')
    Rate = Model.get('currency.currency.rate')
    currencies = {}
    # Each rounds to its ISO 4217 minor unit, as erpsync does (erpsync audit checks it):
    # whole yen, thousandths of a Bahraini dinar.
    for code, name, symbol, rate, digits in [
            ("USD", "U.S. Dollar", "$", "1.0", 2),
            ("EUR", "Euro", "€", "0.92", 2),
            ("GBP", "Pound Sterling", "£", "0.79", 2),
            ("CAD", "Canadian Dollar", "$", "1.36", 2),
            ("JPY", "Yen", "¥", "150", 0),
            ("BHD", "Bahraini Dinar", "BD", "0.376", 3)]:
        currency = Currency(name=name, code=code, symbol=symbol, digits=digits,
            rounding=Decimal(1).scaleb(-digits))
        currency.save()
        Rate(date=dt.date(2000, 1, 1), rate=Decimal(rate), currency=currency).save()
        currencies[code] = currency

    Party = Model.get('party.party')
    company_party = Party(name="erpsync Demo Ltd")
    company_party.save()
    create_company(party=company_party, currency=currencies["USD"])

    today = dt.date.today()
    # From 2025, the year of Shopify's documented payloads the tests and demo replay (a
    # refund's money is booked on the day it moved), to next year.
    for year in range(min(2025, today.year), today.year + 2):
        fiscalyear = set_fiscalyear_invoice_sequences(
            create_fiscalyear(today=dt.date(year, 6, 1)))
        fiscalyear.click('create_period')
    create_chart()
    accounts = get_accounts()
    # Invoices in a currency other than the company's post their conversion differences here
    # (Tryton refuses to post a yen or dinar credit note without them).
    AccountConfiguration = Model.get('account.configuration')
    account_configuration = AccountConfiguration(1)
    account_configuration.currency_exchange_credit_account = accounts['revenue']
    account_configuration.currency_exchange_debit_account = accounts['expense']
    account_configuration.save()

    seed_money(accounts, currencies)

    payment_term = create_payment_term()
    payment_term.save()

    Category = Model.get('product.category')
    category = Category(name="Goods")
    category.accounting = True
    category.account_expense = accounts['expense']
    category.account_revenue = accounts['revenue']
    category.save()

    Uom = Model.get('product.uom')
    unit, = Uom.find([('name', '=', "Unit")])
    Template = Model.get('product.template')
    products = []
    for sku, name, price, stock in PRODUCTS:
        # A variant's code is the template's code plus its suffix; one variant each here.
        template = Template(name=name, code=sku, default_uom=unit, type='goods',
            salable=True, list_price=Decimal(price), account_category=category)
        template.save()
        product, = template.products
        products.append((product, stock))
    shipping = Template(name="Shipping", code=SHIPPING_SKU, default_uom=unit,
        type='service', salable=True, list_price=Decimal("0"), account_category=category)
    shipping.save()
    refund = Template(name="Refund", code=REFUND_SKU, default_uom=unit,
        type='service', salable=True, list_price=Decimal("0"), account_category=category)
    refund.save()
    rounding = Template(name="Tax rounding", code=ROUNDING_SKU, default_uom=unit,
        type='service', salable=True, list_price=Decimal("0"), account_category=category)
    rounding.save()
    for code, name in CHARGES:
        # A gift card sold is owed to its holder until spent: Tryton's sale_gift_card books
        # it on the gift-card liability account (account configuration), not as revenue.
        Template(name=name, code=code, default_uom=unit, type='service', salable=True,
            list_price=Decimal("0"), account_category=category,
            gift_card=(code == "GIFT-CARD")).save()

    for name, rate in TAXES:
        tax = create_tax(Decimal(rate))
        tax.name = name
        tax.description = name
        tax.save()

    Carrier = Model.get('carrier')
    for name, code, product_name in CARRIERS:
        carrier_party = Party(name=name)
        carrier_party.save()
        product_template = Template(name=product_name, code=code, default_uom=unit,
            type='service', salable=True, list_price=Decimal("0"), account_category=category)
        product_template.save()
        carrier_product, = product_template.products
        Carrier(party=carrier_party, carrier_product=carrier_product,
            carrier_cost_method='product').save()

    # The UK store sells 10 % above list (converted to GBP at the ERP's rate by Tryton).
    PriceList = Model.get('product.price_list')
    uk_retail = PriceList(name="UK retail", price='list_price')
    uk_retail.lines.new(formula="unit_price * Decimal('1.10')")
    uk_retail.save()
    # The same with UK VAT in the price, for a store whose prices include tax ([channels.prices]
    # taxes_included): Tax Included says the formula's result is gross.
    uk_gross = PriceList(name="UK retail incl. VAT", price='list_price', tax_included=True)
    uk_gross.lines.new(formula="unit_price * Decimal('1.10') * Decimal('1.20')")
    uk_gross.save()

    Location = Model.get('stock.location')
    storage, = Location.find([('code', '=', 'STO')])
    Inventory = Model.get('stock.inventory')
    inventory = Inventory(location=storage)
    for product, stock in products:
        line = inventory.lines.new(product=product)
        line.quantity = float(stock)
        line.expected_quantity = 0.0
    inventory.click('confirm')

    for name, email, street, postcode, city, country in CUSTOMERS:
        party = Party(name=name)
        party.contact_mechanisms.new(type='email', value=email)
        address, = party.addresses
        address.street_unstructured = street
        address.postal_code = postcode
        address.city = city
        address.country = countries[country]
        party.save()

    User = Model.get('res.user')
    admin, = User.find([('login', '=', 'admin')])
    Application = Model.get('res.user.application')
    application = Application(user=admin, application='rest')
    application.save()
    print(application.key)

    # The payments user: Accounting and Payment only, in the company; a fresh password each
    # build, printed on the second line for the local stack's secret.
    Group = Model.get('res.group')
    company = get_company()
    password = secrets.token_urlsafe(24)
    payments_user = User(login=PAYMENTS_USER, name="erpsync payments")
    payments_user.password = password
    for group in Group.find([('name', 'in', ["Accounting", "Payment", "Payment Approval"])]):
        payments_user.groups.append(group)
    payments_user.companies.append(company)
    payments_user.company = company
    payments_user.save()
    print(password)


def seed_money(accounts, currencies):
    """Accounts and journals for payments (account_payment_clearing), gift cards
    (sale_gift_card) and payouts (account_statement)."""
    Account = Model.get('account.account')
    AccountType = Model.get('account.account.type')
    cash = accounts['cash']
    payable = accounts['payable']

    def account(name, code, type_, parent):
        new = Account(name=name, code=code, type=type_, parent=parent, reconcile=True,
            party_required=False)
        new.save()
        return new

    # Money a gateway took and has not yet paid out: a current asset the payout empties.
    clearing = {
        "shopify": account("Shopify Payments clearing", "1.1.2", cash.type, cash.parent),
        "manual": account("Manual payments clearing", "1.1.3", cash.type, cash.parent),
    }
    # Gift cards sold and not yet spent: a liability (sale_gift_card's account type flag).
    gift_card_type = AccountType(name="Gift cards outstanding", statement='balance',
        parent=payable.type.parent, gift_card=True, company=get_company())
    gift_card_type.save()
    # An account takes its parent's type; the liability reads under its own type instead.
    clearing["gift_cards"] = account("Gift cards outstanding", "2.9", gift_card_type, None)
    account("Payouts in transit", "1.1.4", cash.type, cash.parent)
    AccountConfiguration = Model.get('account.configuration')
    configuration = AccountConfiguration(1)
    configuration.gift_card_account_revenue = clearing["gift_cards"]
    configuration.gift_card_account_expense = clearing["gift_cards"]
    configuration.save()

    Journal = Model.get('account.journal')
    revenue_journal, = Journal.find([('code', '=', 'REV')])
    PaymentJournal = Model.get('account.payment.journal')
    for name, currency, clearing_key in PAYMENT_JOURNALS:
        PaymentJournal(name=name, currency=currencies[currency], process_method='manual',
            clearing_account=clearing[clearing_key],
            clearing_journal=revenue_journal).save()


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
